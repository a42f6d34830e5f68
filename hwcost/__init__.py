"""hwcost: hardware-aware latency and energy prediction for PyTorch models.

The public front: ``analyze`` counts per-layer work and memory traffic; ``predict`` maps it onto
a device profile (``devices()``, ``load_device()``) for latency, FPS and energy; ``measure`` times
a model for real; ``calibrate`` fits a profile to this machine; ``search`` specializes a
Once-for-All-style space for a device and latency budget.
"""
from .analysis import Analysis, analyze
from .devices import DeviceProfile, devices, load_device
from .errors import HwcostError, InputError, ModelForwardError, ProfileError, UnknownModelError
from .predict import LayerPrediction, Prediction, predict, predict_analysis
from . import spaces
from .measure import Measurement, measure
from .records import LayerCost, OpCost, OpRecord, TensorSpec, Totals
from .specialize import LatencyLUT, SearchResult, search


def calibrate(*args, **kwargs):
    """Measure this machine and write a calibrated profile (see hwcost.calibration.calibrate)."""
    from .calibration import calibrate as _calibrate

    return _calibrate(*args, **kwargs)

__version__ = "0.1.0"

__all__ = [
    "Analysis", "analyze", "DeviceProfile", "devices", "load_device", "LayerPrediction", "Prediction",
    "predict", "predict_analysis", "measure", "Measurement", "calibrate", "search", "SearchResult",
    "LatencyLUT", "spaces", "HwcostError", "InputError", "ModelForwardError", "ProfileError",
    "UnknownModelError", "LayerCost", "OpCost", "OpRecord", "TensorSpec", "Totals",
]
