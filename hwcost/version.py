"""The version of hwcost: one place, read by the package and by anything keyed by it (latency tables)."""
__version__ = "0.1.0"
