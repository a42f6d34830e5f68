"""hwcost: hardware-aware latency and energy prediction for PyTorch models.

The public front: ``analyze`` counts per-layer work and memory traffic; ``predict`` maps it onto
a device profile (``devices()``, ``load_device()``) for latency, FPS and energy.
"""
from .analysis import Analysis, analyze
from .devices import DeviceProfile, devices, load_device
from .errors import HwcostError, InputError, ModelForwardError, ProfileError, UnknownModelError
from .predict import LayerPrediction, Prediction, predict, predict_analysis
from .records import LayerCost, OpCost, OpRecord, TensorSpec, Totals

__version__ = "0.1.0"

__all__ = [
    "Analysis", "analyze", "DeviceProfile", "devices", "load_device", "LayerPrediction", "Prediction",
    "predict", "predict_analysis", "HwcostError", "InputError", "ModelForwardError", "ProfileError",
    "UnknownModelError", "LayerCost", "OpCost", "OpRecord", "TensorSpec", "Totals",
]
