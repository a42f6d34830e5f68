"""hwcost: hardware-aware latency and energy prediction for PyTorch models.

The public front: ``analyze`` counts per-layer work and memory traffic; ``predict`` maps it onto
a device profile (``devices()``, ``load_device()``) for latency, FPS and energy; ``measure`` times
a model for real and ``validate`` compares the two on this machine; ``calibrate`` fits a profile to
this machine; ``search`` specializes a Once-for-All-style space for a device and latency budget;
``predict_generation`` does the same for LLM text generation (time to first token, tokens/s, KV-cache
memory); ``register_formula`` adds an op's formula; ``load_model`` builds a zoo model (or torchvision:,
timm:, file.py:function) by name.
"""
from . import spaces
from .analysis import Analysis, analyze
from .devices import DeviceProfile, devices, load_device
from .errors import HwcostError, InputError, ModelForwardError, ProfileError, UnknownModelError
from .formulas import Work, register_formula
from .generation import GenerationPrediction, predict_generation
from .loaders import LoadedModel, load_model
from .measure import Measurement, measure
from .predict import LayerPrediction, Prediction, predict, predict_analysis
from .records import LayerCost, OpCost, OpRecord, TensorSpec, Totals
from .specialize import LatencyLUT, SearchResult, search
from .validate import Validation, validate
from .version import __version__


def calibrate(*args, **kwargs):
    """Measure this machine and write a calibrated profile (see hwcost.calibration.calibrate)."""
    from .calibration import calibrate as _calibrate

    return _calibrate(*args, **kwargs)


__all__ = [
    "Analysis", "analyze", "DeviceProfile", "devices", "load_device", "LayerPrediction", "Prediction",
    "predict", "predict_analysis", "measure", "Measurement", "validate", "Validation", "calibrate", "search",
    "SearchResult", "LatencyLUT", "spaces", "register_formula", "Work", "load_model", "LoadedModel",
    "predict_generation", "GenerationPrediction",
    "HwcostError", "InputError", "ModelForwardError", "ProfileError", "UnknownModelError", "LayerCost", "OpCost",
    "OpRecord", "TensorSpec", "Totals", "__version__",
]
