"""Errors a user can act on: each says what was wrong, where, and what to do."""


class HwcostError(Exception):
    """Base class for every error hwcost raises on purpose."""


class InputError(HwcostError, ValueError):
    """The example input or input shape given to hwcost cannot be used."""


class ModelForwardError(HwcostError, RuntimeError):
    """The model's forward pass failed while hwcost traced it."""


class UnknownModelError(HwcostError, LookupError):
    """A model name given on the command line or to a loader does not resolve."""


class ProfileError(HwcostError, ValueError):
    """A device profile is missing, malformed, or names an unknown device."""
