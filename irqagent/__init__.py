"""irqagent: keep external interrupts on CPUs their controller can reach."""

__version__ = "0.1.0"
PROG = "irqagent"
VERSION_TEXT = f"{PROG} {__version__}\n"  # what ``irqagent --version`` prints
