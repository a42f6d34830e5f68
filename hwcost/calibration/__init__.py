"""Calibration: a microbenchmark suite measured on the device, and a fitted time model per op family."""
from .runner import calibrate, refit

__all__ = ["calibrate", "refit"]
