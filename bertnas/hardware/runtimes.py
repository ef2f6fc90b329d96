"""Runnable kernels and subnets on each runtime this machine can time.

A runtime turns a kernel call (family + shape) or a whole config into a zero-argument
callable that runs it once; :mod:`bertnas.hardware.measure` times those callables.

- ``torch``: the same ``torch.nn.functional`` calls as ``bertnas/model/functional.py``
  (the kernels) and :class:`~bertnas.model.compact.CompactBert` itself (end to end),
  under ``torch.inference_mode`` with ``torch.set_num_threads(threads)``;
- ``onnxruntime``: the graphs of :mod:`bertnas.hardware.onnx_graph` in an
  ``InferenceSession`` with ``intra_op_num_threads = threads``, all graph
  optimisations on, CPU (or CUDA) execution provider;
- ``litert``: each kernel as a small ``torch.nn.Module`` (the same functional calls as
  ``torch``) and each subnet as the TFLite export writes it (fixed length, batch 1,
  static token slots), converted with litert-torch and run by the LiteRT interpreter
  with XNNPACK and ``num_threads = threads``: the kernels a phone's CPU runs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from bertnas.arch import ArchConfig
from bertnas.errors import BertnasError

RUNTIMES = ("torch", "onnxruntime", "litert")

Runner = Callable[[], object]


class Prepared:
    """A model built once for several timing rounds: calling it opens a fresh runner."""

    def __init__(self, open_runner: Callable[[], Runner], close: Callable[[], None] | None = None) -> None:
        self._open, self._close = open_runner, close

    def __call__(self) -> Runner:
        return self._open()

    def close(self) -> None:
        """Free what the build kept (a converted file); idempotent."""
        if self._close is not None:
            self._close()
            self._close = None


class Runtime:
    """Base: ``kernel(family, shape)`` and ``model(arch)`` return callables."""

    name = ""

    def __init__(self, threads: int, batch: int = 1, seq_len: int = 128, cuda: bool = False) -> None:
        self.threads, self.batch, self.seq_len, self.cuda = threads, batch, seq_len, cuda

    def kernel(self, family: str, shape: tuple[int, ...]) -> Runner:
        raise NotImplementedError

    def model(self, arch: ArchConfig) -> Runner:
        raise NotImplementedError

    def prepare(self, arch: ArchConfig) -> Prepared:
        """``arch``'s end-to-end model made ready for several timing rounds: each call of the
        result opens a fresh runner, ``close()`` frees what was kept. This default builds the
        model afresh on every call (cheap for torch and onnxruntime); a runtime whose build is
        expensive (LiteRT converts the whole graph) builds once and reopens."""
        return Prepared(lambda: self.model(arch))

    def baseline(self) -> Runner:
        """A call that does nothing on the runtime: its time is the harness's per-call cost."""
        raise NotImplementedError

    def describe(self) -> dict[str, str]:
        raise NotImplementedError

    def close(self) -> None:
        """Undo what opening the runtime changed in the process (torch's thread count); idempotent."""

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_runtime(name: str, threads: int, batch: int = 1, seq_len: int = 128, cuda: bool = False) -> Runtime:
    """The runtime ``name``, ready to time; use it as a context manager (or call ``close()``)."""
    if name == "torch":
        return TorchRuntime(threads, batch, seq_len, cuda)
    if name == "onnxruntime":
        return OrtRuntime(threads, batch, seq_len, cuda)
    if name == "litert":
        return LitertRuntime(threads, batch, seq_len, cuda)
    raise BertnasError(
        f"runtime {name!r} cannot be measured on this machine (measurable: {', '.join(RUNTIMES)}); "
        "for other targets use `bertnas profile kernels --export DIR` and `bertnas profile import`"
    )


class TorchRuntime(Runtime):
    name = "torch"

    def __init__(self, threads: int, batch: int = 1, seq_len: int = 128, cuda: bool = False) -> None:
        super().__init__(threads, batch, seq_len, cuda)
        if cuda and not torch.cuda.is_available():
            raise BertnasError("--cuda: no CUDA device is visible to torch on this machine")
        # torch's thread count is process-wide: kept until close(), then given back, so timing at
        # 1 thread does not leave training or evaluation later in the same process at 1 thread
        self._threads_before: int | None = torch.get_num_threads()
        torch.set_num_threads(threads)
        self.device = torch.device("cuda" if cuda else "cpu")
        self.generator = torch.Generator().manual_seed(0)

    def close(self) -> None:
        if self._threads_before is not None:
            torch.set_num_threads(self._threads_before)
            self._threads_before = None

    def _randn(self, *shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=self.generator).to(self.device)

    def _sync(self, fn: Callable[[], object]) -> Runner:
        if not self.cuda:
            return fn

        def run() -> object:
            out = fn()
            torch.cuda.synchronize()
            return out

        return run

    def kernel(self, family: str, shape: tuple[int, ...]) -> Runner:
        from bertnas.model.retention import gather_tokens, kept_counts, select_tokens, token_significance

        B, r = self.batch, self._randn
        fn: Callable[[], object]
        if family == "linear":
            m, k, n = shape
            x, weight, bias = r(B, m, k), r(n, k), r(n)
            fn = lambda: F.linear(x, weight, bias)  # noqa: E731
        elif family == "attn_scores":
            t, a, d = shape
            q_flat, k_flat = r(B, t, a * d), r(B, t, a * d)

            def fn() -> object:
                query = q_flat.view(B, t, a, d).transpose(1, 2)
                key = k_flat.view(B, t, a, d).transpose(1, 2)
                return torch.matmul(query, key.transpose(-1, -2)) * (1.0 / math.sqrt(d))

        elif family == "softmax":
            t, a = shape
            scores = r(B, a, t, t)
            mask = torch.zeros(B, 1, 1, t, device=self.device)
            fn = lambda: torch.softmax(scores + mask, dim=-1)  # noqa: E731
        elif family == "attn_context":
            t, a, d = shape
            probs, v_flat = torch.softmax(r(B, a, t, t), -1), r(B, t, a * d)

            def fn() -> object:
                value = v_flat.view(B, t, a, d).transpose(1, 2)
                return torch.matmul(probs, value).transpose(1, 2).reshape(B, t, a * d)

        elif family == "add":
            t, w = shape
            x, y = r(B, t, w), r(B, t, w)
            fn = lambda: x + y  # noqa: E731
        elif family == "layernorm":
            t, w = shape
            x, weight, bias = r(B, t, w), r(w), r(w)
            fn = lambda: F.layer_norm(x, (w,), weight, bias, 1e-12)  # noqa: E731
        elif family == "nonorm":
            t, w = shape
            x, weight, bias = r(B, t, w), r(w), r(w)
            fn = lambda: x * weight + bias  # noqa: E731
        elif family == "gelu":
            x = r(B, *shape)
            fn = lambda: F.gelu(x)  # noqa: E731
        elif family == "relu":
            x = r(B, *shape)
            fn = lambda: F.relu(x)  # noqa: E731
        elif family == "token_select":
            t, a = shape
            probs = torch.softmax(r(B, a, t, t), -1)
            mask = torch.ones(B, t, dtype=torch.bool, device=self.device)
            lengths = mask.sum(dim=1)

            def fn() -> object:
                current = mask.sum(dim=1)
                counts = kept_counts(0.8, lengths, current)
                bool((counts < current).any())  # the model's host sync deciding whether to extract
                return select_tokens(token_significance(probs, mask), mask, counts)

        elif family == "gather":
            t, w = shape
            hidden = r(B, max(2 * t, 2), w)
            index = torch.sort(torch.randperm(max(2 * t, 2), generator=self.generator)[:t]).values
            index = index.unsqueeze(0).expand(B, -1).to(self.device)
            fn = lambda: gather_tokens(hidden, index)  # noqa: E731
        elif family == "embedding":
            t, h = shape
            from bertnas.model.functional import EmbeddingWeights, RunOptions, embed

            weights = EmbeddingWeights(r(30522, h), r(512, h), r(2, h), (r(h), r(h)))
            ids = torch.randint(1000, 30000, (B, t), generator=self.generator).to(self.device)
            options = RunOptions()
            fn = lambda: embed(ids, None, weights, options)  # noqa: E731
        elif family == "classifier":
            (h,) = shape
            x, pw, pb, cw, cb = r(B, self.seq_len, h), r(h, h), r(h), r(2, h), r(2)
            fn = lambda: F.linear(torch.tanh(F.linear(x[:, 0], pw, pb)), cw, cb)  # noqa: E731
        else:
            raise BertnasError(f"unknown kernel family {family!r}")
        return self._inference(self._sync(fn))

    @staticmethod
    def _inference(fn: Runner) -> Runner:
        def run() -> object:
            with torch.inference_mode():
                return fn()

        return run

    def baseline(self) -> Runner:
        x = self._randn(1)
        return self._inference(self._sync(lambda: x))

    def model(self, arch: ArchConfig) -> Runner:
        from bertnas.model.compact import CompactBert, CompactConfig

        torch.manual_seed(0)
        model = CompactBert(CompactConfig(arch)).eval().to(self.device)
        ids = torch.randint(1, arch.vocab_size, (self.batch, self.seq_len), generator=self.generator).to(self.device)
        mask = torch.ones_like(ids)
        return self._inference(self._sync(lambda: model(ids, mask)))

    def describe(self) -> dict[str, str]:
        return {"torch": torch.__version__, "device": str(self.device)}


class OrtRuntime(Runtime):
    name = "onnxruntime"

    def __init__(self, threads: int, batch: int = 1, seq_len: int = 128, cuda: bool = False) -> None:
        super().__init__(threads, batch, seq_len, cuda)
        import onnxruntime as ort

        self.ort = ort
        provider = "CUDAExecutionProvider" if cuda else "CPUExecutionProvider"
        if provider not in ort.get_available_providers():
            raise BertnasError(f"onnxruntime has no {provider} here (available: {ort.get_available_providers()})")
        self.providers = [provider]

    def session(self, model: object) -> object:
        options = self.ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = self.ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        return self.ort.InferenceSession(model.SerializeToString(), options, providers=self.providers)

    def _runner(self, model: object, vocab_size: int = 30522) -> Runner:
        from bertnas.hardware.onnx_graph import feeds_for

        session = self.session(model)
        feeds = feeds_for(model, vocab_size=vocab_size)
        return lambda: session.run(None, feeds)

    def baseline(self) -> Runner:
        from bertnas.hardware.onnx_graph import GraphBuilder

        builder = GraphBuilder()
        return self._runner(builder.model([builder.op("Identity", [builder.input("x", (1,))])]))

    def kernel(self, family: str, shape: tuple[int, ...]) -> Runner:
        from bertnas.hardware.onnx_graph import kernel_model

        return self._runner(kernel_model(family, shape, self.batch, self.seq_len))

    def model(self, arch: ArchConfig) -> Runner:
        from bertnas.hardware.onnx_graph import arch_model

        return self._runner(arch_model(arch, self.seq_len, self.batch), arch.vocab_size)

    def describe(self) -> dict[str, str]:
        return {"onnxruntime": self.ort.__version__, "provider": self.providers[0], "numpy": np.__version__}


class _Kernel(torch.nn.Module):
    """One kernel call as a module: ``forward(*inputs)`` runs ``fn`` with the fixed weights."""

    def __init__(self, fn: Callable[..., torch.Tensor], weights: tuple[torch.Tensor, ...] = ()) -> None:
        super().__init__()
        self.fn = fn
        self.weights = torch.nn.ParameterList([torch.nn.Parameter(w, requires_grad=False) for w in weights])

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.fn(*inputs, *self.weights)


class LitertRuntime(Runtime):
    """LiteRT (TFLite) interpreter, XNNPACK delegate, CPU; kernels converted one by one."""

    name = "litert"

    def __init__(self, threads: int, batch: int = 1, seq_len: int = 128, cuda: bool = False) -> None:
        super().__init__(threads, batch, seq_len, cuda)
        if cuda:
            raise BertnasError("--cuda: the LiteRT runtime times CPU kernels (XNNPACK) only")
        if batch != 1:
            raise BertnasError(f"--batch {batch}: the LiteRT runtime times batch 1 (the exported TFLite graphs' batch)")
        from bertnas.export.formats import TfliteFormat

        missing = TfliteFormat().available()
        if missing:
            raise BertnasError(f"runtime litert: {missing}")
        import tempfile

        self._scratch = tempfile.TemporaryDirectory(prefix="bertnas-litert-")
        self._count = 0
        self.generator = torch.Generator().manual_seed(0)

    def _randn(self, *shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=self.generator)

    def _runner(self, module: torch.nn.Module, inputs: tuple[torch.Tensor, ...]) -> Runner:
        from pathlib import Path

        from bertnas.export.formats import convert_to_tflite, tflite_interpreter

        self._count += 1
        path = convert_to_tflite(module, Path(self._scratch.name) / f"k{self._count}.tflite", args=inputs)
        interpreter = tflite_interpreter(path, self.threads)
        run = interpreter.get_signature_runner()
        details = run.get_input_details()
        names = sorted(details, key=lambda n: details[n]["index"])
        # int64 indices come back as int32 inputs (LiteRT's default): feed what the graph declares
        feeds = {name: x.numpy().astype(details[name]["dtype"]) for name, x in zip(names, inputs, strict=True)}
        path.unlink()  # the interpreter holds the model
        return lambda: run(**feeds)

    def kernel(self, family: str, shape: tuple[int, ...]) -> Runner:
        from bertnas.arch import kept_tokens
        from bertnas.model.retention import gather_tokens, kept_counts, select_tokens, token_significance

        r = self._randn
        weights: tuple[torch.Tensor, ...] = ()
        if family == "linear":
            m, k, n = shape
            inputs, weights = (r(1, m, k),), (r(n, k), r(n))
            fn: Callable[..., torch.Tensor] = F.linear
        elif family in ("attn_scores", "attn_context"):
            t, a, d = shape
            if family == "attn_scores":
                inputs = (r(1, t, a * d), r(1, t, a * d))

                def fn(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
                    query, key = q.view(1, t, a, d).transpose(1, 2), k.view(1, t, a, d).transpose(1, 2)
                    return torch.matmul(query, key.transpose(-1, -2)) * (1.0 / math.sqrt(d))

            else:
                inputs = (torch.softmax(r(1, a, t, t), -1), r(1, t, a * d))

                def fn(probs: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
                    value = v.view(1, t, a, d).transpose(1, 2)
                    return torch.matmul(probs, value).transpose(1, 2).reshape(1, t, a * d)

        elif family == "softmax":
            t, a = shape
            inputs = (r(1, a, t, t), torch.zeros(1, 1, 1, t))
            fn = lambda scores, mask: torch.softmax(scores + mask, dim=-1)  # noqa: E731
        elif family == "add":
            t, w = shape
            inputs, fn = (r(1, t, w), r(1, t, w)), torch.add
        elif family in ("layernorm", "nonorm"):
            t, w = shape
            inputs, weights = (r(1, t, w),), (r(w), r(w))
            if family == "layernorm":
                fn = lambda x, weight, bias: F.layer_norm(x, (w,), weight, bias, 1e-12)  # noqa: E731
            else:
                fn = lambda x, weight, bias: x * weight + bias  # noqa: E731
        elif family in ("gelu", "relu"):
            inputs, fn = (r(1, *shape),), F.gelu if family == "gelu" else F.relu
        elif family == "token_select":
            t, a = shape
            width = kept_tokens(0.8, t)  # static slots, as the TFLite export selects
            inputs = (torch.softmax(r(1, a, t, t), -1),)

            def fn(probs: torch.Tensor) -> torch.Tensor:
                mask = torch.ones(1, t, dtype=torch.bool)
                counts = kept_counts(0.8, mask.sum(dim=1), mask.sum(dim=1))
                index, _ = select_tokens(token_significance(probs, mask), mask, counts, width)
                return index

        elif family == "gather":
            t, w = shape
            index = torch.sort(torch.randperm(max(2 * t, 2), generator=self.generator)[:t]).values.unsqueeze(0)
            inputs = (r(1, max(2 * t, 2), w), index)
            fn = gather_tokens
        elif family == "embedding":
            t, h = shape
            from bertnas.model.functional import EmbeddingWeights, RunOptions, embed

            inputs = (torch.randint(1000, 30000, (1, t), generator=self.generator),)
            weights = (r(30522, h), r(512, h), r(2, h), r(h), r(h))

            def fn(ids: torch.Tensor, word, position, types, gamma, beta) -> torch.Tensor:  # noqa: ANN001
                return embed(ids, None, EmbeddingWeights(word, position, types, (gamma, beta)), RunOptions())

        elif family == "classifier":
            (h,) = shape
            inputs, weights = (r(1, self.seq_len, h),), (r(h, h), r(h), r(2, h), r(2))
            fn = lambda x, pw, pb, cw, cb: F.linear(torch.tanh(F.linear(x[:, 0], pw, pb)), cw, cb)  # noqa: E731
        else:
            raise BertnasError(f"unknown kernel family {family!r}")
        return self._runner(_Kernel(fn, weights), inputs)

    def baseline(self) -> Runner:
        return self._runner(_Kernel(lambda x: x + 0.0), (self._randn(1),))

    def model(self, arch: ArchConfig) -> Runner:
        path = self._convert(arch)
        runner = self._open(path, arch)
        path.unlink()  # the interpreter holds the model
        return runner

    def prepare(self, arch: ArchConfig) -> Prepared:
        """Converted once (the conversion is most of a subnet's measuring time); every round
        opens a fresh interpreter on the same file, which is deleted by ``close()``."""
        path = self._convert(arch)
        return Prepared(lambda: self._open(path, arch), lambda: path.unlink(missing_ok=True))

    def _convert(self, arch: ArchConfig) -> Path:
        from bertnas.export.formats import TfliteFormat
        from bertnas.model.compact import CompactBert, CompactConfig

        torch.manual_seed(0)
        model = CompactBert(CompactConfig(arch)).eval()
        self._count += 1
        directory = Path(self._scratch.name) / f"m{self._count}"
        directory.mkdir()
        return TfliteFormat().write(model, directory, self.seq_len)

    def _open(self, path: Path, arch: ArchConfig) -> Runner:
        from bertnas.export.formats import TfliteModel

        runner = TfliteModel(path, threads=self.threads)
        ids = torch.randint(1, arch.vocab_size, (1, self.seq_len), generator=self.generator).numpy()
        ids, mask, types = (x.astype(runner.input_dtype) for x in (ids, np.ones_like(ids), np.zeros_like(ids)))
        return lambda: runner.run(ids, mask, types)

    def describe(self) -> dict[str, str]:
        from importlib.metadata import version

        return {"litert": version("ai-edge-litert"), "litert_torch": version("litert-torch"), "delegate": "XNNPACK"}


__all__ = ["RUNTIMES", "LitertRuntime", "OrtRuntime", "Prepared", "Runtime", "TorchRuntime", "open_runtime"]
