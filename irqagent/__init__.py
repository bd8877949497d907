"""irqagent: keep external interrupts on CPUs their controller can reach."""

__version__ = "0.1.0"
