"""Deployment file formats beyond the PyTorch directory: one small class per format.

Each :class:`ExportFormat` knows its file name, how to write it (from the compact model or
from the fp32 file of its family) and how to run it (:meth:`ExportFormat.runner`, an
object with ``logits(input_ids, attention_mask, token_type_ids)`` and ``time_ms(...)``).
:func:`bertnas.export.package.export_models` writes, checks and times every requested one
the same way; a new format is one class here and one line in :data:`FORMATS`.

========== ===================== ==============================================================
name       file                  how
========== ===================== ==============================================================
onnx       ``model.onnx``        ``torch.onnx`` (dynamo), dynamic batch and length
onnx-int8  ``model.int8.onnx``   onnxruntime ``quantize_dynamic`` (int8 MatMul weights, fp32 tables)
tflite     ``model.tflite``      ``litert-torch`` at a fixed length (``--seq-len``), batch 1
tflite-int8 ``model.int8.tflite`` ai-edge-quantizer dynamic-range recipe (int8 weights)
========== ===================== ==============================================================

Token retention runs inside every graph. The TFLite graph has fixed shapes, so each layer
keeps as many token slots as an input of the full length would and masks the extra ones
(:attr:`bertnas.model.functional.RunOptions.static_tokens`), which leaves logits unchanged.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import statistics
import sys
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from bertnas.atomic import atomic_write
from bertnas.errors import BertnasError
from bertnas.export.onnx import ONNX_NAME, LogitsModule, OnnxModel, export_onnx
from bertnas.model.compact import CompactBert

TFLITE_NAME = "model.tflite"


class ConversionError(BertnasError):
    """A converter rejected the model; the message names the operator where it can."""


class ExportFormat(ABC):
    """One deployable file of a compact model."""

    name: str
    file: str
    quantized: bool = False
    base: str | None = None  # the fp32 format a quantized one is made from

    @abstractmethod
    def write(self, model: CompactBert, directory: Path, seq_len: int) -> Path:
        """Write the file into ``directory``; return its path."""

    @abstractmethod
    def runner(self, path: Path, threads: int | None) -> Any:
        """Something with ``logits(ids, mask, types) -> ndarray`` and ``time_ms(seq_len, ...)``."""

    def available(self) -> str | None:
        """None, or why this machine cannot write the format (a missing package, with its install)."""
        return None


class OnnxFormat(ExportFormat):
    name, file = "onnx", ONNX_NAME

    def write(self, model: CompactBert, directory: Path, seq_len: int) -> Path:
        return export_onnx(model, directory / self.file)

    def runner(self, path: Path, threads: int | None) -> OnnxModel:
        return OnnxModel(path, threads=threads)


class OnnxInt8Format(OnnxFormat):
    name, file, quantized, base = "onnx-int8", "model.int8.onnx", True, "onnx"

    def write(self, model: CompactBert, directory: Path, seq_len: int) -> Path:
        """int8 per-channel weights for every MatMul; the embedding tables stay fp32.

        onnxruntime's default recipe also quantizes the embedding ``Gather`` with one scale per
        table, which cost small subnets up to 2.2 points of SST-2 dev accuracy (README, issue 16);
        the table lookups are no compute, so keeping them fp32 costs size only, not speed.
        """
        from onnxruntime.quantization import QuantType, quantize_dynamic

        source, target = directory / ONNX_NAME, directory / self.file
        with _native_output_to(None):
            atomic_write(
                target,
                lambda path: quantize_dynamic(
                    str(source), path, weight_type=QuantType.QInt8, per_channel=True, op_types_to_quantize=["MatMul"]
                ),
                suffix=".onnx",
            )
        return target


class TfliteFormat(ExportFormat):
    name, file = "tflite", TFLITE_NAME

    def available(self) -> str | None:
        return _missing("litert_torch", "litert-torch") or _missing("ai_edge_litert", "ai-edge-litert")

    def write(self, model: CompactBert, directory: Path, seq_len: int) -> Path:
        target = directory / self.file
        wrapper = LogitsModule(model).eval()
        inputs = _example_inputs(model, seq_len)
        model.static_tokens = True
        try:
            convert_to_tflite(wrapper, target, kwargs=inputs)
        finally:
            model.static_tokens = False
        return target

    def runner(self, path: Path, threads: int | None) -> TfliteModel:
        return TfliteModel(path, threads=threads)


def convert_to_tflite(module: nn.Module, target: Path, *, args: tuple = (), kwargs: dict | None = None) -> Path:
    """Convert ``module`` at the example inputs with litert-torch and write ``target`` atomically.

    The converter's native output goes to a log; a failure is a :class:`ConversionError`
    naming the operator it stopped at. (The LiteRT timing runtime converts kernels with it too.)
    """
    try:
        with _native_output_to(log := _log_file()):
            import litert_torch  # prints TensorFlow's start-up lines

            edge = litert_torch.convert(module.eval(), args or None, sample_kwargs=kwargs)
            atomic_write(target, lambda path: edge.export(path), suffix=".tflite")
    except Exception as error:  # the converter raises many kinds; say which op, keep the others
        raise ConversionError(_conversion_error("litert-torch", error, log)) from None
    finally:
        Path(log).unlink(missing_ok=True)
    return target


def tflite_interpreter(path: str | Path, threads: int = 1) -> Any:
    """A LiteRT interpreter (XNNPACK on CPU) for ``path``, tensors allocated; one-line errors."""
    try:
        with _native_output_to(None):
            from ai_edge_litert.interpreter import Interpreter

            interpreter = Interpreter(model_path=str(path), num_threads=threads)
            interpreter.allocate_tensors()
    except Exception as error:  # LiteRT raises ValueError/RuntimeError with C++ text
        first = next((line for line in str(error).splitlines() if line.strip()), type(error).__name__)
        op = re.search(r"builtin opcode '(\w+)'", str(error))
        where = f" at op {op.group(1)}" if op else ""
        raise BertnasError(f"{path}: LiteRT cannot load it{where} ({first.strip()})") from None
    return interpreter


class TfliteInt8Format(TfliteFormat):
    name, file, quantized, base = "tflite-int8", "model.int8.tflite", True, "tflite"

    def available(self) -> str | None:
        return _missing("ai_edge_quantizer", "ai-edge-quantizer") or super().available()

    def write(self, model: CompactBert, directory: Path, seq_len: int) -> Path:
        source, target = directory / TFLITE_NAME, directory / self.file
        try:
            with _native_output_to(log := _log_file()):
                from ai_edge_quantizer import quantizer, recipe

                result = quantizer.Quantizer(str(source), recipe.dynamic_wi8_afp32()).quantize()
                atomic_write(target, lambda path: result.export_model(path, overwrite=True), suffix=".tflite")
        except Exception as error:
            raise ConversionError(_conversion_error("ai-edge-quantizer", error, log)) from None
        finally:
            Path(log).unlink(missing_ok=True)
        return target


#: Every format by name, in the order they are written (a quantized one after its base).
FORMATS: dict[str, ExportFormat] = {
    fmt.name: fmt for fmt in (OnnxFormat(), OnnxInt8Format(), TfliteFormat(), TfliteInt8Format())
}
INT8 = {"onnx": "onnx-int8", "tflite": "tflite-int8"}


# ---------------------------------------------------------------------- TFLite runner
class TfliteModel:
    """A ``.tflite`` file on the LiteRT interpreter (XNNPACK on CPU), batch 1, fixed length.

    :meth:`logits` runs a padded batch one example at a time, each padded to the model's length.
    """

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise BertnasError(f"{self.path} does not exist; export a model with `bertnas export --format tflite`")
        self.interpreter = tflite_interpreter(self.path, threads or 1)
        self.threads = threads or 1
        self._run = self.interpreter.get_signature_runner()
        details = self._run.get_input_details()
        if set(details) != {"input_ids", "attention_mask", "token_type_ids"}:
            raise BertnasError(f"{self.path}: inputs are {sorted(details)}; not a bertnas TFLite export")
        self.seq_len = int(details["input_ids"]["shape"][1])
        self._dtype = details["input_ids"]["dtype"]

    @property
    def input_dtype(self) -> Any:
        """The numpy dtype of the three inputs (int32 or int64, as converted)."""
        return self._dtype

    def run(self, ids: np.ndarray, mask: np.ndarray, types: np.ndarray) -> np.ndarray:
        """One example, ``(1, seq_len)`` arrays of :attr:`input_dtype`: its logits."""
        return self._one(ids, mask, types)

    def _one(self, ids: np.ndarray, mask: np.ndarray, types: np.ndarray) -> np.ndarray:
        out = self._run(input_ids=ids, attention_mask=mask, token_type_ids=types)
        return next(iter(out.values()))

    def logits(self, input_ids: Any, attention_mask: Any = None, token_type_ids: Any = None) -> np.ndarray:
        ids = _as_array(input_ids)
        mask = np.ones_like(ids) if attention_mask is None else _as_array(attention_mask)
        types = np.zeros_like(ids) if token_type_ids is None else _as_array(token_type_ids)
        rows = []
        for row in range(ids.shape[0]):
            length = int(mask[row].sum())
            if length > self.seq_len:
                raise BertnasError(
                    f"{self.path} takes at most {self.seq_len} tokens and an input has {length}; "
                    f"truncate to {self.seq_len} (tokenizer max_length) or export with a larger --seq-len"
                )
            padded = [np.zeros((1, self.seq_len), self._dtype) for _ in range(3)]
            for target, source in zip(padded, (ids, mask, types), strict=True):
                width = min(source.shape[1], self.seq_len)
                target[0, :width] = source[row, :width]
            rows.append(self._one(*padded))
        return np.concatenate(rows).astype(np.float32)

    def time_ms(self, seq_len: int | None = None, batch_size: int = 1, warmup: int = 10, repeats: int = 50) -> dict:
        """Wall time of one invocation on an input whose every token is real (batch 1)."""
        generator = np.random.default_rng(0)
        ids = generator.integers(1, 100, size=(1, self.seq_len)).astype(self._dtype)  # ids any vocabulary has
        mask, types = np.ones_like(ids), np.zeros_like(ids)
        for _ in range(warmup):
            self._one(ids, mask, types)
        samples = []
        for _ in range(repeats):
            start = time.perf_counter()
            self._one(ids, mask, types)
            samples.append((time.perf_counter() - start) * 1000.0)
        return timing_summary(samples, warmup, 1, self.seq_len)


def timing_summary(samples: list[float], warmup: int, batch_size: int, seq_len: int) -> dict[str, Any]:
    samples = sorted(samples)
    return {
        "median_ms": statistics.median(samples),
        "p10_ms": samples[len(samples) // 10],
        "p90_ms": samples[min(len(samples) - 1, (9 * len(samples)) // 10)],
        "repeats": len(samples),
        "warmup": warmup,
        "batch_size": batch_size,
        "seq_len": seq_len,
    }


# ---------------------------------------------------------------------- helpers
def _example_inputs(model: CompactBert, seq_len: int) -> dict[str, torch.Tensor]:
    if model.classifier is None:
        raise BertnasError("the model has no classification head; only task models (num_labels set) export")
    if seq_len > model.arch.max_position_embeddings:
        raise BertnasError(
            f"--seq-len {seq_len} exceeds the model's {model.arch.max_position_embeddings} positions; "
            "choose a smaller one"
        )
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(1, model.arch.vocab_size, (1, seq_len), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[0, max(1, seq_len // 2) :] = 0  # an example the graph must not specialise on
    return {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": torch.zeros_like(input_ids)}


def _as_array(value: Any) -> np.ndarray:
    array = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
    if array.ndim != 2:
        raise BertnasError(f"inputs must be 2-D (batch, seq), got shape {tuple(array.shape)}")
    return array


def _missing(module: str, package: str) -> str | None:
    import importlib.util

    if importlib.util.find_spec(module) is None:
        return f"{package} is not installed: pip install 'bertnas[export]' (or pip install {package})"
    return None


def _log_file() -> str:
    handle, path = tempfile.mkstemp(prefix="bertnas-convert-", suffix=".log")
    os.close(handle)
    return path


@contextlib.contextmanager
def _native_output_to(path: str | None) -> Iterator[None]:
    """Send what native converters and interpreters print (C++ logs, progress) to ``path``
    (None: discard), at the file-descriptor level where Python's redirection does not reach."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    target = os.open(path or os.devnull, os.O_WRONLY | os.O_APPEND)
    os.dup2(target, 1)
    os.dup2(target, 2)
    stream = open(path or os.devnull, "a")  # noqa: SIM115 (closed below): Python-level writers (rich, tqdm)
    logging.disable(logging.WARNING)  # the converters warn through the root logger about their own defaults
    try:
        with contextlib.redirect_stdout(stream), contextlib.redirect_stderr(stream):
            yield
    finally:
        logging.disable(logging.NOTSET)
        stream.close()
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, target):
            os.close(fd)


_OP = re.compile(r"\b((?:aten|stablehlo|tfl|mhlo|chlo|torch\.ops)\.[A-Za-z_][\w.]*)")


def _conversion_error(converter: str, error: BaseException, log: str) -> str:
    text = f"{error}\n{Path(log).read_text(errors='replace') if Path(log).is_file() else ''}"
    ops = list(dict.fromkeys(_OP.findall(text)))
    first = next((line.strip() for line in str(error).splitlines() if line.strip()), type(error).__name__)
    where = f"at op {ops[0]}" if ops else "(no operator named in its message)"
    return f"{converter} failed {where}: {first[:300]}"
