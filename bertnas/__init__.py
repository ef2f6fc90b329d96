"""bertnas: hardware-aware neural architecture search for compressed BERT models."""

import logging as _logging

# First, so that a module imported below can import it at its top.
__version__ = "0.1.0"

from bertnas.arch import ArchConfig, ArchLimits, LayerConfig, kept_tokens  # noqa: E402
from bertnas.errors import BertnasError  # noqa: E402

# The export extra's converters install torchao, which transformers imports on its way: on a
# CPU-only torch it logs, at every import, that its CUDA kernels do not load, and registers
# enums that torch's pytree warns about. Neither concerns anything bertnas runs.
for _name in ("torchao", "torch.utils._pytree"):
    _logging.getLogger(_name).setLevel(_logging.ERROR)


def load(directory: str, device: str = "cpu"):  # noqa: ANN201 (a model, a tokenizer)
    """The model and tokenizer of an exported model directory, whatever its format.

    See :func:`bertnas.deploy.load`.
    """
    from bertnas.deploy import load as _load

    return _load(directory, device)


__all__ = ["ArchConfig", "ArchLimits", "BertnasError", "LayerConfig", "kept_tokens", "load", "__version__"]
