"""ONNX export of a compact model, and a small onnxruntime runner for it.

The graph takes ``input_ids``, ``attention_mask`` and ``token_type_ids`` (int64,
``(batch, seq)``, both axes dynamic) and returns ``logits``. PoWER-BERT token retention
runs *inside* the graph: each layer computes every example's kept-token count from its
real length (the attention mask), ranks tokens by the attention they receive (``TopK``)
and gathers them, exactly as :mod:`bertnas.model.retention` does in PyTorch.

Exporter: ``torch.onnx.export(..., dynamo=True)`` (``torch.export``, non-strict). The
number of tokens a layer keeps is data-dependent (the longest kept count in the batch);
``torch.export`` carries it as an unbacked size, which becomes a dynamic ``K`` input to
ONNX ``TopK``. The TorchScript exporter would freeze it at the example's value. The one
data-dependent branch in the model ("skip selection when nothing is dropped") is always
taken while exporting (see :func:`bertnas.model.functional.layer_forward`), which
changes no logits. Opset :data:`OPSET` (native ``LayerNormalization`` and ``Gelu``).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import statistics
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from bertnas import __version__
from bertnas.atomic import file_mode, temporary_file
from bertnas.errors import BertnasError
from bertnas.model.compact import CompactBert

OPSET = 20
ONNX_NAME = "model.onnx"
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
OUTPUT_NAME = "logits"


class LogitsModule(nn.Module):
    """The compact model with positional inputs and a plain tensor output, as the ONNX and TFLite
    converters want: ``(batch, num_labels)`` logits."""

    def __init__(self, model: CompactBert) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor
    ) -> torch.Tensor:
        logits = self.model(input_ids, attention_mask, token_type_ids).logits
        assert logits is not None
        return logits


def _example_inputs(model: CompactBert) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Two examples of different real lengths, so no axis is specialised to 0 or 1."""
    arch = model.arch
    tokens = min(16, arch.max_position_embeddings)
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(1, arch.vocab_size, (2, tokens), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, tokens // 2 :] = 0
    return input_ids, attention_mask, torch.zeros_like(input_ids)


def export_onnx(model: CompactBert, path: str | Path) -> Path:
    """Write ``model`` as an ONNX graph to ``path`` (through a temporary file and a rename)."""
    from torch.export import Dim

    if model.classifier is None:
        raise BertnasError("the model has no classification head; only task models (num_labels set) export to ONNX")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    was_training = model.training
    model.eval()
    batch, seq = Dim("batch", min=1, max=4096), Dim("seq", min=1, max=model.arch.max_position_embeddings)
    shapes = {name: {0: batch, 1: seq} for name in INPUT_NAMES}
    temporary = str(temporary_file(path, ".onnx"))
    try:
        # The exporter narrates each step on stdout and warns about unrelated optional packages.
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings(), _quiet_torch_logs():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                LogitsModule(model),
                _example_inputs(model),
                input_names=list(INPUT_NAMES),
                output_names=[OUTPUT_NAME],
                dynamic_shapes=shapes,
                opset_version=OPSET,
                dynamo=True,
                external_data=False,
                verbose=False,
            )
        assert program is not None
        proto = program.model_proto
        _set_metadata(
            proto,
            {
                "bertnas_version": __version__,
                "arch": model.arch.to_json(),
                "arch_hash": model.arch.hash(),
                "task": model.config.task or "",
                "id2label": json.dumps(model.config.id2label or {}),
            },
        )
        import onnx

        onnx.checker.check_model(proto)
        onnx.save_model(proto, temporary)
        os.chmod(temporary, file_mode())
        os.replace(temporary, path)
    finally:
        Path(temporary).unlink(missing_ok=True)
        model.train(was_training)
    return path


@contextlib.contextmanager
def _quiet_torch_logs() -> Any:
    names = ("torch.onnx", "torch.fx.experimental.symbolic_shapes", "torch.export", "torch._export")
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _set_metadata(proto: Any, values: dict[str, str]) -> None:
    del proto.metadata_props[:]
    for key, value in values.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value


def _as_int64(value: Any, name: str) -> np.ndarray:
    array = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
    if array.ndim != 2:
        raise BertnasError(f"{name} must be 2-D (batch, seq), got shape {tuple(array.shape)}")
    return array.astype(np.int64, copy=False)


class OnnxModel:
    """An exported ``model.onnx`` on onnxruntime's CPU provider."""

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise BertnasError(f"{self.path} does not exist; export a model with `bertnas export`")
        options = ort.SessionOptions()
        if threads is not None:  # as bertnas.hardware measures its onnxruntime profiles
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # errors only
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime raises its own exception types for bad files
            raise BertnasError(f"{self.path}: onnxruntime cannot load it ({str(error).splitlines()[0]})") from None
        names = [item.name for item in self.session.get_inputs()]
        if names != list(INPUT_NAMES):
            raise BertnasError(f"{self.path}: inputs are {names}, expected {list(INPUT_NAMES)}; not a bertnas export")

    @property
    def metadata(self) -> dict[str, str]:
        """What :func:`export_onnx` recorded: arch JSON and hash, task, labels, version."""
        return dict(self.session.get_modelmeta().custom_metadata_map)

    def logits(self, input_ids: Any, attention_mask: Any = None, token_type_ids: Any = None) -> np.ndarray:
        """Logits ``(batch, num_labels)`` for int arrays or tensors ``(batch, seq)``."""
        ids = _as_int64(input_ids, "input_ids")
        mask = np.ones_like(ids) if attention_mask is None else _as_int64(attention_mask, "attention_mask")
        types = np.zeros_like(ids) if token_type_ids is None else _as_int64(token_type_ids, "token_type_ids")
        if mask.shape != ids.shape or types.shape != ids.shape:
            raise BertnasError(
                f"input shapes differ: input_ids {ids.shape}, attention_mask {mask.shape}, token_type_ids {types.shape}"
            )
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        return self.session.run([OUTPUT_NAME], feeds)[0]

    def time_sentences(
        self,
        sentences: list[dict[str, Any]],
        anchor_seq_len: int,
        rounds: int = 3,
        calls: int = 3,
        reference: OnnxModel | None = None,
        reference_ms: float | None = None,
    ) -> dict[str, Any]:
        """Each sentence run alone, as a deployed model runs it: batch 1, its own length, no padding.

        ``sentences``: tokenized examples (``input_ids``, ``token_type_ids``). Every call runs
        between two calls of an anchor, ``reference`` (default: this model) on ``anchor_seq_len``
        tokens, as :func:`bertnas.hardware.measure.time_paired` times a profile's subnets, so the
        machine's speed changes can be taken out; ``rounds`` interleaved passes over the
        sentences, ``calls`` timed calls per sentence per pass. Returns per-sentence ``lengths``,
        ``ms`` (median as measured), ``ratio`` (median ratio to the anchor calls beside it) and
        ``steady_ms``: ``ratio`` times ``reference_ms`` (default: the anchor's median over this
        run), every sentence at one speed of the machine. Several models timed against one
        ``reference`` and one ``reference_ms`` are at the same speed as each other too; with this
        model as its own anchor, a slow spell of the machine that lasts the whole run is not seen.
        """
        from bertnas.hardware.measure import Timing, time_paired

        if not sentences:
            raise BertnasError("no sentences to time")
        feeds = []
        for example in sentences:
            ids = np.asarray(example["input_ids"], dtype=np.int64)[None, :]
            types = np.asarray(example.get("token_type_ids", np.zeros_like(ids[0])), dtype=np.int64)[None, :]
            feeds.append({"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": types})
        anchor_model = reference or self
        anchor_feed = anchor_model._random_feed(anchor_seq_len, 1)

        def call(feed: dict[str, np.ndarray], model: OnnxModel = self) -> Any:
            return lambda: model.session.run([OUTPUT_NAME], feed)

        timing = Timing(warmup=1, min_repeats=calls, max_repeats=calls, min_seconds=0.0)
        ms = np.zeros((rounds, len(feeds)))
        ratios, anchors = np.zeros_like(ms), np.zeros_like(ms)
        for round_index in range(rounds):  # interleaved: a slow spell touches every sentence a little
            for index, feed in enumerate(feeds):
                paired = time_paired(call(feed), call(anchor_feed, anchor_model), timing)
                ms[round_index, index], ratios[round_index, index] = paired.ms, paired.ratio
                anchors[round_index, index] = paired.anchor_ms
        anchor_ms = float(np.median(anchors))
        ratio = np.median(ratios, axis=0)
        return {
            "lengths": [int(feed["input_ids"].shape[1]) for feed in feeds],
            "ms": np.median(ms, axis=0).tolist(),
            "ratio": ratio.tolist(),
            "steady_ms": (ratio * (reference_ms or anchor_ms)).tolist(),
            "anchor_ms": anchor_ms,
            "anchor_seq_len": anchor_seq_len,
            "rounds": rounds,
            "calls": calls,
        }

    def _random_feed(self, seq_len: int, batch_size: int) -> dict[str, np.ndarray]:
        """``batch_size`` unpadded inputs of ``seq_len`` random tokens (seed 0), as the graph takes them."""
        vocab = int(json.loads(self.metadata.get("arch", "{}")).get("vocab_size", 100))
        ids = np.random.default_rng(0).integers(1, min(vocab, 2000), size=(batch_size, seq_len), dtype=np.int64)
        return {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}

    def time_ms(self, seq_len: int, batch_size: int = 1, warmup: int = 10, repeats: int = 50) -> dict[str, Any]:
        """Wall time of one forward pass on ``batch_size`` unpadded inputs of ``seq_len`` tokens.

        Returns the median (the figure to report) and the spread, in milliseconds.
        """
        feed = self._random_feed(seq_len, batch_size)
        for _ in range(warmup):
            self.logits(**feed)
        samples = []
        for _ in range(repeats):
            start = time.perf_counter()
            self.logits(**feed)
            samples.append((time.perf_counter() - start) * 1000.0)
        samples.sort()
        return {
            "median_ms": statistics.median(samples),
            "p10_ms": samples[len(samples) // 10],
            "p90_ms": samples[min(len(samples) - 1, (9 * len(samples)) // 10)],
            "repeats": repeats,
            "warmup": warmup,
            "batch_size": batch_size,
            "seq_len": seq_len,
        }
