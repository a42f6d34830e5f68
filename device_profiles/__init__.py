"""Shipped device profiles (YAML), installed as the package hwcost.device_profiles (see pyproject.toml)."""
