"""The compact model: a subnet as a standalone model with physically smaller tensors.

This is what extraction produces and what deployment teams load. It needs neither the
supernet nor its weights: a directory with ``config.json``, ``model.safetensors`` and
the tokenizer files::

    model = CompactBert.from_pretrained("exported/subnet-1234")
    logits = model(**tokenizer(texts, return_tensors="pt", padding=True)).logits
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from bertnas.arch import ArchConfig
from bertnas.errors import BertnasError
from bertnas.model.functional import BertOutput, RunOptions, bert_forward
from bertnas.model.params import EmbeddingParams, LayerParams
from bertnas.readers import read_json

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
MODEL_TYPE = "bertnas-compact"


@dataclass
class CompactConfig:
    """Everything needed to rebuild a compact model: its architecture and run options."""

    arch: ArchConfig
    layer_norm_eps: float = 1e-12
    hidden_dropout: float = 0.1
    attention_dropout: float = 0.1
    pad_token_id: int = 0
    id2label: dict[int, str] | None = None
    task: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def run_options(self, training: bool) -> RunOptions:
        return RunOptions(
            hidden_act=self.arch.hidden_act,
            norm=self.arch.norm,
            layer_norm_eps=self.layer_norm_eps,
            hidden_dropout=self.hidden_dropout,
            attention_dropout=self.attention_dropout,
            training=training,
        )

    def to_dict(self) -> dict[str, Any]:
        from bertnas import __version__

        return {
            "model_type": MODEL_TYPE,
            "bertnas_version": __version__,
            "arch": self.arch.to_dict(),
            "arch_hash": self.arch.hash(),
            "layer_norm_eps": self.layer_norm_eps,
            "hidden_dropout": self.hidden_dropout,
            "attention_dropout": self.attention_dropout,
            "pad_token_id": self.pad_token_id,
            "id2label": {str(k): v for k, v in self.id2label.items()} if self.id2label else None,
            "task": self.task,
            "extra": self.extra,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = CONFIG_NAME) -> CompactConfig:
        if data.get("model_type") != MODEL_TYPE:
            raise BertnasError(
                f"{source}: model_type is {data.get('model_type')!r}, not {MODEL_TYPE!r}; "
                "this is not a bertnas compact model directory"
            )
        id2label = data.get("id2label")
        return cls(
            arch=ArchConfig.from_dict(data["arch"], f"{source}: arch"),
            layer_norm_eps=float(data.get("layer_norm_eps", 1e-12)),
            hidden_dropout=float(data.get("hidden_dropout", 0.1)),
            attention_dropout=float(data.get("attention_dropout", 0.1)),
            pad_token_id=int(data.get("pad_token_id", 0)),
            id2label={int(k): v for k, v in id2label.items()} if id2label else None,
            task=data.get("task"),
            extra=dict(data.get("extra") or {}),
        )


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


class CompactBert(nn.Module):
    """A BERT whose every layer may have its own shape, bottleneck and token retention."""

    def __init__(self, config: CompactConfig) -> None:
        super().__init__()
        self.config = config
        arch = config.arch
        h = arch.hidden_size
        self.embeddings = EmbeddingParams(arch.vocab_size, arch.max_position_embeddings, arch.type_vocab_size, h)
        self.layers = nn.ModuleList(
            LayerParams(
                hidden_size=h,
                width=layer.inner_width(h),
                qk_size=layer.heads * layer.qk_dim,
                v_size=layer.heads * layer.v_dim,
                ffn_dim=layer.ffn_dim,
                extra_ffns=layer.ffn_stack - 1,
                bottleneck=layer.bottleneck or 0,
            )
            for layer in arch.layers
        )
        self.pooler = nn.Linear(h, h) if arch.pooler else None
        self.classifier = nn.Linear(h, arch.num_labels) if arch.num_labels else None

    @property
    def arch(self) -> ArchConfig:
        return self.config.arch

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
    ) -> BertOutput:
        return bert_forward(
            input_ids,
            attention_mask,
            token_type_ids,
            self.embeddings.weights(),
            [(shape, params.weights()) for shape, params in zip(self.arch.layers, self.layers, strict=True)],
            (self.pooler.weight, self.pooler.bias) if self.pooler is not None else None,
            (self.classifier.weight, self.classifier.bias) if self.classifier is not None else None,
            self.config.run_options(self.training),
            output_hidden_states=output_hidden_states,
            output_attentions=output_attentions,
        )

    # ------------------------------------------------------------------ persistence
    def save_pretrained(self, directory: str | Path, tokenizer: Any = None) -> Path:
        """Write ``config.json``, ``model.safetensors`` and (if given) the tokenizer."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {name: tensor.detach().contiguous().cpu() for name, tensor in self.state_dict().items()}
        save_file(state, str(directory / WEIGHTS_NAME), metadata={"format": "pt"})
        (directory / CONFIG_NAME).write_text(json.dumps(self.config.to_dict(), indent=2) + "\n")
        if tokenizer is not None:
            tokenizer.save_pretrained(str(directory))
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | Path, device: str | torch.device = "cpu") -> CompactBert:
        """Load a compact model directory (weights through safetensors only)."""
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
