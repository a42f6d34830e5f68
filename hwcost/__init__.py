"""hwcost: hardware-aware latency and energy prediction for PyTorch models.

The public front: ``analyze`` counts per-layer work and memory traffic; later stages map it
onto a device profile.
"""
from .analysis import Analysis, analyze
from .errors import HwcostError, InputError, ModelForwardError, ProfileError, UnknownModelError
from .records import LayerCost, OpCost, OpRecord, TensorSpec, Totals

__version__ = "0.1.0"

__all__ = [
    "Analysis", "analyze", "HwcostError", "InputError", "ModelForwardError", "ProfileError",
    "UnknownModelError", "LayerCost", "OpCost", "OpRecord", "TensorSpec", "Totals",
]
