"""Hardware profiles and the latency predictor built on them (issue #4).

::

    from bertnas.hardware import load_predictor
    predictor = load_predictor("pixel4")
    predictor.predict(arch)          # ms at the profile's seq_len and batch

See docs/hardware.md for the profile format, the predictor and the calibration method.
"""

from bertnas.hardware.predictor import LatencyPredictor, load_predictor
from bertnas.hardware.profile import HardwareProfile, list_profiles, load_profile, profiles_dir

__all__ = ["HardwareProfile", "LatencyPredictor", "list_profiles", "load_predictor", "load_profile", "profiles_dir"]
