"""Default file locations, in a module of their own so that the CLI can name them without
importing the modules that use them (start-up cost)."""

DEFAULT_CONFIG = "/etc/irqagent/irqagent.toml"
DEFAULT_STATE_DIR = "/var/lib/irqagent"
