"""The elastic BERT supernet (Once-for-All style ``set_active_subnet`` / ``get_active_subnet``).

The supernet holds one pretrained BERT at full size, plus the parameters the backbone
lacks for MobileBERT-style subnets (extra stacked FFNs, bottleneck projections). An
active subnet runs on *slices* of those tensors, so compute really shrinks: a subnet
with 6 of 12 heads multiplies 6-head matrices, not masked 12-head ones.

Slicing rules (prefix slices; rewiring puts the most important heads and FFN neurons
first, see :mod:`bertnas.supernet.rewire`):

- hidden ``h``: the first ``h`` channels of embeddings, norms, and every projection
  into or out of the residual stream;
- heads ``a``, ``qk_dim`` ``k``, ``v_dim`` ``v``: the first ``a`` heads, and within each head
  its first ``k`` (query/key) or ``v`` (value) dimensions;
- FFN ``f``: the first ``f`` neurons; stacked FFN ``s``: the backbone's FFN plus the first
  ``s - 1`` extra FFNs;
- bottleneck ``b``: the first ``b`` rows/columns of the bottleneck projections; the
  layer's attention and FFNs then run at width ``b`` on the first ``b`` input channels
  of their backbone weights.

See docs/supernet.md for the design of the extra parameters.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn

from bertnas.arch import ArchConfig, ArchLimits, LayerConfig, full_arch
from bertnas.backbones import limits_from_config
from bertnas.errors import BertnasError
from bertnas.hashing import file_sha256
from bertnas.model.compact import CompactBert, CompactConfig, load_weights
from bertnas.model.functional import (
    Affine,
    EmbeddingWeights,
    FFNWeights,
    ForwardOutput,
    LayerWeights,
    RunOptions,
    bert_forward,
)
from bertnas.model.params import EmbeddingParams, FFNParams, LayerParams, hf_bert_names, layer_state_dict
from bertnas.readers import read_json

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
MODEL_TYPE = "bertnas-supernet"
_ACTIVATIONS = {"gelu": "gelu", "relu": "relu"}


@dataclass
class SupernetConfig:
    """Shapes of the backbone and of the extra parameters the supernet adds."""

    backbone: str
    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    head_dim: int
    ffn_dim: int
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    hidden_act: str = "gelu"
    hidden_dropout: float = 0.1
    attention_dropout: float = 0.1
    pad_token_id: int = 0
    pooler: bool = True
    num_labels: int | None = None
    id2label: dict[int, str] | None = None
    task: str | None = None
    max_ffn_stack: int = 1  # 1: no extra FFNs
    max_bottleneck: int = 0  # 0: no bottleneck projections
    # Rewiring permutes the residual stream: the backbone channel held at each position (None: unchanged).
    channel_order: list[int] | None = None

    @property
    def limits(self) -> ArchLimits:
        return ArchLimits(
            hidden_size=self.hidden_size,
            num_layers=self.num_layers,
            num_heads=self.num_heads,
            head_dim=self.head_dim,
            ffn_dim=self.ffn_dim,
            max_ffn_stack=self.max_ffn_stack,
            max_bottleneck=self.max_bottleneck,
        )

    @classmethod
    def from_hf(cls, hf_config: Any, backbone: str, **overrides: Any) -> SupernetConfig:
        if hf_config.hidden_act not in _ACTIVATIONS:
            raise BertnasError(f"backbone {backbone!r} uses activation {hf_config.hidden_act!r}; supported: gelu, relu")
        if getattr(hf_config, "position_embedding_type", "absolute") != "absolute":
            raise BertnasError(
                f"backbone {backbone!r} uses relative position embeddings; only absolute ones are supported"
            )
        limits = limits_from_config(hf_config, f"backbone {backbone!r}")
        values: dict[str, Any] = dict(
            backbone=backbone,
            vocab_size=hf_config.vocab_size,
            hidden_size=limits.hidden_size,
            num_layers=limits.num_layers,
            num_heads=limits.num_heads,
            head_dim=limits.head_dim,
            ffn_dim=limits.ffn_dim,
            max_position_embeddings=hf_config.max_position_embeddings,
            type_vocab_size=hf_config.type_vocab_size,
            layer_norm_eps=hf_config.layer_norm_eps,
            hidden_act=hf_config.hidden_act,
            hidden_dropout=hf_config.hidden_dropout_prob,
            attention_dropout=hf_config.attention_probs_dropout_prob,
            pad_token_id=hf_config.pad_token_id or 0,
        )
        values.update(overrides)
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if self.id2label:
            data["id2label"] = {str(k): v for k, v in self.id2label.items()}
        return {"model_type": MODEL_TYPE, **data}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SupernetConfig:
        data = {k: v for k, v in data.items() if k != "model_type"}
        if data.get("id2label"):
            data["id2label"] = {int(k): v for k, v in data["id2label"].items()}
        return cls(**data)

    @classmethod
    def load(cls, directory: str | Path) -> SupernetConfig:
        """The config of the saved supernet in ``directory`` (its ``config.json``; no weights read)."""

        path = Path(directory) / CONFIG_NAME
        data = read_json(path, "model config") if path.is_file() else None
        if not isinstance(data, dict) or data.get("model_type") != MODEL_TYPE:
            raise BertnasError(
                f"{directory} is not a saved supernet directory (no {CONFIG_NAME} of a bertnas supernet)"
            )
        try:
            return cls.from_dict(data)
        except TypeError as error:
            raise BertnasError(f"{path}: not a bertnas supernet config ({error})") from None

    def complete(self, arch: ArchConfig) -> ArchConfig:
        """``arch`` with the fields the backbone owns (vocabulary, head, pooler) set from it."""
        return arch.replace(
            vocab_size=self.vocab_size,
            max_position_embeddings=self.max_position_embeddings,
            type_vocab_size=self.type_vocab_size,
            num_labels=self.num_labels,
            pooler=self.pooler,
            backbone=self.backbone,
        )

    def full_arch(self) -> ArchConfig:
        """The backbone itself: the largest subnet without extra FFNs or bottlenecks."""
        return self.complete(full_arch(self.limits, hidden_act=self.hidden_act))


def _heads_slice(linear: nn.Linear, heads: int, head_dim: int, keep_heads: int, keep_dim: int, cols: int) -> Affine:
    """Rows of the first ``keep_heads`` heads, first ``keep_dim`` dims of each, first ``cols`` inputs."""
    weight = linear.weight.view(heads, head_dim, -1)[:keep_heads, :keep_dim, :cols]
    bias = linear.bias.view(heads, head_dim)[:keep_heads, :keep_dim]
    return weight.reshape(keep_heads * keep_dim, cols), bias.reshape(-1)


def _prefix(linear: nn.Linear, rows: int, cols: int) -> Affine:
    return linear.weight[:rows, :cols], linear.bias[:rows]


def _norm_slice(norm: Any, width: int) -> Affine:
    return norm.weight[:width], norm.bias[:width]


class ElasticBert(nn.Module):
    """A weight-sharing supernet over a pretrained BERT."""

    def __init__(self, config: SupernetConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.embeddings = EmbeddingParams(c.vocab_size, c.max_position_embeddings, c.type_vocab_size, c.hidden_size)
        self.layers = nn.ModuleList(
            LayerParams(
                hidden_size=c.hidden_size,
                width=c.hidden_size,
                qk_size=c.num_heads * c.head_dim,
                v_size=c.num_heads * c.head_dim,
                ffn_dim=c.ffn_dim,
                extra_ffns=c.max_ffn_stack - 1,
                bottleneck=c.max_bottleneck,
            )
            for _ in range(c.num_layers)
        )
        self.pooler = nn.Linear(c.hidden_size, c.hidden_size) if c.pooler else None
        self.classifier = nn.Linear(c.hidden_size, c.num_labels) if c.num_labels else None
        self.tokenizer: Any = None  # set by the loaders; saved next to the weights
        self._init_extra_parameters()
        self._active = self.full_arch()

    # ------------------------------------------------------------------ construction
    def _init_extra_parameters(self) -> None:
        """Extras start as no-ops where possible, so the backbone's function is untouched.

        Extra FFNs: normal(0.02) input weights, zero output weights, so ``u + FFN_k(u) = u``.
        Bottleneck projections: identity (the first ``b`` channels in, back to the first
        ``b`` channels out); a bottleneck layer cannot equal the backbone layer, so it is
        initialised to something close and trained.
        """
        std = 0.02
        with torch.no_grad():
            for layer in self.layers:
                for extra in layer.extra_ffns:
                    nn.init.normal_(extra.up.weight, std=std)
                    nn.init.zeros_(extra.up.bias)
                    nn.init.zeros_(extra.down.weight)
                    nn.init.zeros_(extra.down.bias)
                if layer.has_bottleneck:
                    for linear in (layer.bottleneck_in, layer.bottleneck_out):
                        nn.init.eye_(linear.weight)
                        nn.init.zeros_(linear.bias)
            if self.classifier is not None:
                nn.init.normal_(self.classifier.weight, std=std)
                nn.init.zeros_(self.classifier.bias)

    @classmethod
    def from_backbone(
        cls,
        name_or_path: str,
        num_labels: int | None = None,
        max_ffn_stack: int = 1,
        max_bottleneck: int = 0,
        task: str | None = None,
    ) -> ElasticBert:
        """Build a supernet from a Hugging Face BERT (BertModel or BertForSequenceClassification)."""
        from bertnas.supernet.backbone import load_backbone

        hf_model, tokenizer = load_backbone(name_or_path, num_labels)
        return cls.from_hf_model(
            hf_model, name_or_path, tokenizer, max_ffn_stack=max_ffn_stack, max_bottleneck=max_bottleneck, task=task
        )

    @classmethod
    def from_hf_model(
        cls,
        hf_model: Any,
        backbone: str,
        tokenizer: Any = None,
        max_ffn_stack: int = 1,
        max_bottleneck: int = 0,
        task: str | None = None,
    ) -> ElasticBert:
        """Build a supernet from an in-memory ``BertModel`` / ``BertForSequenceClassification``."""
        has_head = hasattr(hf_model, "classifier")
        bert = hf_model.bert if has_head else hf_model
        if max_ffn_stack < 1:
            raise BertnasError(f"max_ffn_stack={max_ffn_stack} must be at least 1 (1: no extra FFNs)")
        if not 0 <= max_bottleneck <= hf_model.config.hidden_size:
            raise BertnasError(
                f"max_bottleneck={max_bottleneck} must be between 0 (none) and the backbone's hidden size "
                f"{hf_model.config.hidden_size}"
            )
        config = SupernetConfig.from_hf(
            hf_model.config,
            backbone=backbone,
            pooler=bert.pooler is not None,
            num_labels=hf_model.config.num_labels if has_head else None,
            id2label=dict(hf_model.config.id2label) if has_head else None,
            task=task,
            max_ffn_stack=max_ffn_stack,
            max_bottleneck=max_bottleneck,
        )
        supernet = cls(config)
        supernet.load_hf_state_dict(hf_model.state_dict())
        supernet.tokenizer = tokenizer
        return supernet.eval()

    def load_hf_state_dict(self, hf_state: dict[str, torch.Tensor]) -> None:
        """Copy a ``transformers`` BERT state dict into the supernet's own names."""
        hf_state = {k.removeprefix("bert."): v for k, v in hf_state.items()}
        names = hf_bert_names(self.config.num_layers, self.pooler is not None, self.classifier is not None)
        own = self.state_dict()
        with torch.no_grad():
            for ours, theirs in names.items():
                if theirs not in hf_state:
                    raise BertnasError(f"backbone checkpoint lacks {theirs}; is it a standard BERT?")
                own[ours].copy_(hf_state[theirs])

    # ------------------------------------------------------------------ subnets
    @property
    def limits(self) -> ArchLimits:
        return self.config.limits

    def complete(self, arch: ArchConfig) -> ArchConfig:
        """``arch`` with the fields the backbone owns (vocabulary, head, pooler) set from it."""
        return self.config.complete(arch)

    def full_arch(self) -> ArchConfig:
        """The backbone itself: the largest subnet without extra FFNs or bottlenecks."""
        return self.config.full_arch()

    def set_active_subnet(self, arch: ArchConfig) -> None:
        arch.check_fits(self.limits, backbone_name=f"backbone {self.config.backbone}")
        self._active = self.complete(arch)

    def get_active_arch(self) -> ArchConfig:
        return self._active

    def get_active_subnet(self) -> CompactBert:
        """The active subnet as a standalone :class:`CompactBert` with copied, smaller tensors."""
        c = self.config
        model = CompactBert(
            CompactConfig(
                arch=self._active,
                layer_norm_eps=c.layer_norm_eps,
                hidden_dropout=c.hidden_dropout,
                attention_dropout=c.attention_dropout,
                pad_token_id=c.pad_token_id,
                id2label=c.id2label,
                task=c.task,
            )
        )
        state = {name: tensor.detach().clone() for name, tensor in self.active_state_dict().items()}
        model.load_state_dict(state, strict=True)
        return model.to(self.embeddings.word.device).eval()

    # ------------------------------------------------------------------ slicing
    def _embedding_weights(self, h: int) -> EmbeddingWeights:
        e = self.embeddings
        return EmbeddingWeights(e.word[:, :h], e.position[:, :h], e.token_type[:, :h], _norm_slice(e.norm, h))

    def _layer_weights(self, shape: LayerConfig, h: int) -> LayerWeights:
        params: LayerParams = self.layers[shape.index]
        heads, head_dim = self.config.num_heads, self.config.head_dim
        width = shape.inner_width(h)

        def ffn_slice(ffn: FFNParams) -> FFNWeights:
            return FFNWeights(_prefix(ffn.up, shape.ffn_dim, width), _prefix(ffn.down, width, shape.ffn_dim))

        out = params.attention_out
        out_weight = out.weight.view(-1, heads, head_dim)[:width, : shape.heads, : shape.v_dim]
        weights = LayerWeights(
            query=_heads_slice(params.query, heads, head_dim, shape.heads, shape.qk_dim, width),
            key=_heads_slice(params.key, heads, head_dim, shape.heads, shape.qk_dim, width),
            value=_heads_slice(params.value, heads, head_dim, shape.heads, shape.v_dim, width),
            attention_out=(
                out_weight.reshape(width, shape.heads * shape.v_dim),
                out.bias[:width] if shape.attention_out_bias else None,
            ),
            attention_norm=_norm_slice(params.attention_norm, width),
            extra_ffns=[ffn_slice(extra) for extra in params.extra_ffns[: shape.ffn_stack - 1]],
            ffn=ffn_slice(params.ffn),
            ffn_norm=_norm_slice(params.ffn_norm, width),
        )
        if shape.bottleneck is not None:
            weights.bottleneck_in = _prefix(params.bottleneck_in, width, h)
            weights.bottleneck_out = _prefix(params.bottleneck_out, h, width)
            weights.bottleneck_norm = _norm_slice(params.bottleneck_norm, h)
        return weights

    def _head_weights(self, h: int) -> tuple[Affine | None, Affine | None]:
        pooler = _prefix(self.pooler, h, h) if self.pooler is not None else None
        classifier = (self.classifier.weight[:, :h], self.classifier.bias) if self.classifier is not None else None
        return pooler, classifier

    def active_state_dict(self) -> dict[str, torch.Tensor]:
        """The active subnet's tensors (views into the supernet) under compact-model names."""
        arch, h = self._active, self._active.hidden_size
        emb = self._embedding_weights(h)
        state = {
            "embeddings.word": emb.word,
            "embeddings.position": emb.position,
            "embeddings.token_type": emb.token_type,
            "embeddings.norm.weight": emb.norm[0],
            "embeddings.norm.bias": emb.norm[1],
        }
        for position, shape in enumerate(arch.layers):
            state.update(layer_state_dict(f"layers.{position}.", self._layer_weights(shape, h)))
        pooler, classifier = self._head_weights(h)
        for name, affine in (("pooler", pooler), ("classifier", classifier)):
            if affine is not None:
                state[f"{name}.weight"], state[f"{name}.bias"] = affine
        return {name: tensor.contiguous() for name, tensor in state.items()}

    def run_options(self) -> RunOptions:
        return RunOptions(
            hidden_act=self._active.hidden_act,
            norm=self._active.norm,
            layer_norm_eps=self.config.layer_norm_eps,
            hidden_dropout=self.config.hidden_dropout,
            attention_dropout=self.config.attention_dropout,
            training=self.training,
        )

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        head_mask: list[torch.Tensor] | None = None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
    ) -> ForwardOutput:
        """Run the active subnet."""
        arch, h = self._active, self._active.hidden_size
        pooler, classifier = self._head_weights(h)
        return bert_forward(
            input_ids,
            attention_mask,
            token_type_ids,
            self._embedding_weights(h),
            [(shape, self._layer_weights(shape, h)) for shape in arch.layers],
            pooler,
            classifier,
            self.run_options(),
            head_mask=head_mask,
            output_hidden_states=output_hidden_states,
            output_attentions=output_attentions,
        )

    # ------------------------------------------------------------------ persistence
    def save_pretrained(self, directory: str | Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {name: tensor.detach().contiguous().cpu() for name, tensor in self.state_dict().items()}
        save_file(state, str(directory / WEIGHTS_NAME), metadata={"format": "pt"})
        (directory / CONFIG_NAME).write_text(json.dumps(self.config.to_dict(), indent=2) + "\n")
        if self.tokenizer is not None:
            self.tokenizer.save_pretrained(str(directory))
        return directory

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path, **backbone_options: Any) -> ElasticBert:
        """Load a saved supernet directory, or build one from a Hugging Face BERT."""
        path = Path(name_or_path)
        config_path = path / CONFIG_NAME
        if config_path.is_file():
            data = read_json(config_path, "model config")
            if isinstance(data, dict) and data.get("model_type") == MODEL_TYPE:
                return cls._load_saved(path, data)
        return cls.from_backbone(str(name_or_path), **backbone_options)

    @classmethod
    def _load_saved(cls, path: Path, data: dict[str, Any]) -> ElasticBert:
        from transformers import AutoTokenizer, BertConfig

        supernet = cls(SupernetConfig.from_dict(data))
        weights = path / WEIGHTS_NAME
        if not weights.is_file():
            raise BertnasError(f"supernet directory {path} has no {WEIGHTS_NAME}")
        try:
            supernet.load_state_dict(load_weights(weights), strict=True)
        except RuntimeError as error:
            first_line = str(error).splitlines()[0]
            raise BertnasError(f"{weights}: weights do not match {CONFIG_NAME} ({first_line})") from None
        if (path / "tokenizer_config.json").is_file() or (path / "vocab.txt").is_file():
            # config= keeps transformers from reading our config.json (model_type bertnas-supernet) and
            # warning about it; tokenizer_config.json names the class, BertConfig is only the fallback.
            supernet.tokenizer = AutoTokenizer.from_pretrained(str(path), config=BertConfig())
        return supernet.eval()


def supernet_fingerprint(directory: str | Path) -> str:
    """sha256 of a saved supernet's weights: the cache key for "this supernet"."""
    return file_sha256(Path(directory) / WEIGHTS_NAME)[:16]
