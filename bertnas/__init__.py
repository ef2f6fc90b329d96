"""bertnas: hardware-aware neural architecture search for compressed BERT models."""

from bertnas.arch import ArchConfig, ArchLimits, LayerConfig, kept_tokens
from bertnas.errors import BertnasError

__version__ = "0.1.0"

__all__ = ["ArchConfig", "ArchLimits", "BertnasError", "LayerConfig", "kept_tokens", "__version__"]
