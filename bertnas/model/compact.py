"""The compact model: a subnet as a standalone model with physically smaller tensors.

This is what extraction produces and what deployment teams load. It needs neither the
supernet nor its weights: a directory with ``config.json``, ``model.safetensors``, the
tokenizer files and the modeling code (``modeling_bertnas.py`` and the modules it
imports), so it also loads in transformers without bertnas::

    model = CompactBert.from_pretrained("exported/subnet-1234")    # bertnas: safetensors only
    model = AutoModelForSequenceClassification.from_pretrained("exported/subnet-1234", trust_remote_code=True)
    logits = model(**tokenizer(texts, return_tensors="pt", padding=True)).logits
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from bertnas import __version__
from bertnas.arch import ArchConfig
from bertnas.atomic import atomic_write, atomic_write_text
from bertnas.errors import BertnasError
from bertnas.model.bundle import write_bundle
from bertnas.model.hf import (
    AUTO_MAP,
    MODEL_TYPE,
    CompactBertConfig,
    CompactBertForSequenceClassification,
)
from bertnas.readers import read_json

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


@dataclass
class CompactConfig:
    """Everything needed to build a compact model: its architecture and run options.

    bertnas' side of :class:`~bertnas.model.hf.CompactBertConfig` (which it becomes
    through :meth:`to_hf`): the architecture as a validated :class:`ArchConfig`.
    """

    arch: ArchConfig
    layer_norm_eps: float = 1e-12
    hidden_dropout: float = 0.1
    attention_dropout: float = 0.1
    pad_token_id: int = 0
    id2label: dict[int, str] | None = None
    task: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_hf(self) -> CompactBertConfig:

        labels = {}
        if self.id2label:
            labels = {"id2label": dict(self.id2label), "label2id": {v: k for k, v in self.id2label.items()}}
        return CompactBertConfig(
            arch=self.arch.to_dict(),
            arch_hash=self.arch.hash(),
            layer_norm_eps=self.layer_norm_eps,
            hidden_dropout=self.hidden_dropout,
            attention_dropout=self.attention_dropout,
            pad_token_id=self.pad_token_id,
            task=self.task,
            bertnas_version=__version__,
            extra=self.extra,
            **labels,
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = CONFIG_NAME) -> CompactConfig:
        if data.get("model_type") != MODEL_TYPE:
            raise BertnasError(
                f"{source}: model_type is {data.get('model_type')!r}, not {MODEL_TYPE!r}; "
                "this is not a bertnas compact model directory"
            )
        id2label = data.get("id2label")
        if id2label is not None and not isinstance(id2label, dict):
            raise BertnasError(f"{source}: id2label must be an object of label names")
        try:
            return cls(
                arch=ArchConfig.from_dict(data.get("arch"), f"{source}: arch"),
                layer_norm_eps=float(data.get("layer_norm_eps", 1e-12)),
                hidden_dropout=float(data.get("hidden_dropout", 0.1)),
                attention_dropout=float(data.get("attention_dropout", 0.1)),
                pad_token_id=int(data.get("pad_token_id") or 0),
                id2label={int(k): str(v) for k, v in id2label.items()} if id2label else None,
                task=data.get("task"),
                extra=dict(data.get("extra") or {}),
            )
        except (TypeError, ValueError) as error:
            raise BertnasError(f"{source}: {error}; re-export the model") from None


def config_json(config: CompactBertConfig) -> str:
    """``config.json`` of a compact model directory: the config plus what the Auto classes need."""
    data = config.to_dict()
    data["architectures"] = [CompactBertForSequenceClassification.__name__]
    data["auto_map"] = dict(AUTO_MAP)
    for key in ("_name_or_path", "name_or_path", "transformers_version"):
        data.pop(key, None)  # no absolute paths; the version is recorded in bertnas.json
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def load_weights(path: Path, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """A safetensors file's tensors; anything else (a pickle under that name, a truncated file) is a
    one-line error, never unpickled."""
    try:
        return load_file(str(path), device=str(device))
    except Exception as error:  # safetensors raises its own SafetensorError (and OSError for I/O)
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise BertnasError(
            f"{path}: not a safetensors weights file ({first}); re-export the model, bertnas never unpickles weights"
        ) from None


class CompactBert(CompactBertForSequenceClassification):
    """The Hugging Face compact model with bertnas' :class:`ArchConfig` and safe persistence."""

    def __init__(self, config: CompactConfig | CompactBertConfig) -> None:
        if isinstance(config, CompactConfig):
            config = config.to_hf()
        super().__init__(config)
        self._arch = ArchConfig.from_dict(config.arch, "config: arch")

    @property
    def arch(self) -> ArchConfig:
        return self._arch

    # ------------------------------------------------------------------ persistence
    def save_pretrained(self, directory: str | Path, tokenizer: Any = None, **_: Any) -> Path:  # type: ignore[override]
        """Write ``config.json``, ``model.safetensors``, the modeling code and (if given) the tokenizer."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {name: tensor.detach().contiguous().cpu() for name, tensor in self.state_dict().items()}
        atomic_write(directory / WEIGHTS_NAME, lambda path: save_file(state, path, metadata={"format": "pt"}))
        atomic_write_text(directory / CONFIG_NAME, config_json(self.config))
        write_bundle(directory)
        if tokenizer is not None:
            tokenizer.save_pretrained(str(directory))
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | Path, device: str | torch.device = "cpu") -> CompactBert:  # type: ignore[override]
        """Load a compact model directory (weights through safetensors only, never pickle)."""
        directory = Path(directory)
        config_path, weights_path = directory / CONFIG_NAME, directory / WEIGHTS_NAME
        for path in (config_path, weights_path):
            if not path.is_file():
                raise BertnasError(f"{directory} is not a compact model directory: {path.name} is missing")
        data = read_json(config_path, "model config")
        if not isinstance(data, dict):
            raise BertnasError(f"{config_path}:1: a model config is a JSON object")
        model = cls(CompactConfig.from_dict(data, str(config_path)))
        state = load_weights(weights_path, device)
        try:
            missing, unexpected = model.load_state_dict(state, strict=False)
        except RuntimeError as error:  # a tensor whose shape disagrees with config.json
            first = str(error).strip().splitlines()[-1].strip()
            raise BertnasError(f"{weights_path}: weights do not match config.json ({first})") from None
        if missing or unexpected:
            raise BertnasError(
                f"{weights_path}: weights do not match config.json (missing {missing[:3]}, unexpected {unexpected[:3]})"
            )
        return model.to(device).eval()
