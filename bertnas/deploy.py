"""One entry point for a deployment team: load any exported model and classify text.

::

    import bertnas

    model, tokenizer = bertnas.load("export/trial-0042")                 # PyTorch (safetensors)
    model, tokenizer = bertnas.load("export/trial-0042/model.int8.onnx")  # or any file of it
    for p in bertnas.deploy.predict(model, tokenizer, ["a charming journey"]):
        print(p.label, p.score)

Every loaded model answers ``model(input_ids=..., attention_mask=..., token_type_ids=...)``
with an object whose ``logits`` is a ``(batch, num_labels)`` tensor, whatever runs it:
:class:`~bertnas.model.CompactBert` (``hf``), transformers' ``BertForSequenceClassification``
(the plain-BERT copy, ``bert/``), onnxruntime (``onnx``, ``onnx-int8``) or LiteRT
(``tflite``, ``tflite-int8``). Nothing from the directory is executed: the bundled modeling
code is for transformers users; bertnas runs its own, and reads weights through
safetensors only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bertnas.errors import BertnasError
from bertnas.readers import read_json

#: ``format`` names :func:`load` accepts, and the file each one reads.
FILES = {
    "hf": "model.safetensors",
    "plain": "bert/model.safetensors",
    "onnx": "model.onnx",
    "onnx-int8": "model.int8.onnx",
    "tflite": "model.tflite",
    "tflite-int8": "model.int8.tflite",
}
_PREFERENCE = ("hf", "plain", "onnx", "tflite", "onnx-int8", "tflite-int8")


@dataclass
class ClassifierOutput:
    logits: torch.Tensor  # (batch, num_labels)


@dataclass
class Prediction:
    label: str
    score: float  # the label's probability (regression: the predicted value)
    scores: dict[str, float]


class FileModel:
    """An ONNX or TFLite file behind the PyTorch call convention."""

    def __init__(self, runner: Any, path: Path, kind: str, id2label: dict[int, str], max_length: int | None) -> None:
        self.runner, self.path, self.format = runner, path, kind
        self.id2label = id2label
        self.max_length = max_length  # the most tokens the file takes (TFLite: its fixed length)

    def __call__(
        self, input_ids: Any, attention_mask: Any = None, token_type_ids: Any = None, **_: Any
    ) -> ClassifierOutput:
        return ClassifierOutput(
            torch.from_numpy(np.asarray(self.runner.logits(input_ids, attention_mask, token_type_ids)))
        )

    def eval(self) -> FileModel:  # the torch models' idiom, so callers need not tell them apart
        return self


def load(path: str | Path, device: str = "cpu", format: str | None = None) -> tuple[Any, Any]:  # noqa: A002
    """``(model, tokenizer)`` of an exported model directory or one of its files.

    ``format`` picks one of :data:`FILES` in a directory; by default the first present of
    hf, plain, onnx, tflite, onnx-int8, tflite-int8.
    """
    path = Path(path)
    if not path.exists():
        raise BertnasError(f"{path} does not exist; give a model directory written by `bertnas export`")
    if path.is_file():
        kind = next((name for name, file in FILES.items() if path.name == Path(file).name), None)
        if kind is None or kind in ("hf", "plain"):
            raise BertnasError(
                f"{path}: not a model file bertnas loads (model.onnx, model.tflite, their .int8 forms); "
                "or give the model directory"
            )
        directory = path.parent
    else:
        directory = path
        if (directory / "manifest.json").is_file() and not (directory / "config.json").is_file():
            names = sorted(p.name for p in directory.iterdir() if (p / "config.json").is_file())
            raise BertnasError(
                f"{directory} is an export of {len(names)} model(s); load one of them, e.g. {directory / names[0]}"
                if names
                else f"{directory} holds no model directory"
            )
        if format is not None and format not in FILES:
            raise BertnasError(f"format {format!r}: choose one of {', '.join(FILES)}")
        present = [name for name in _PREFERENCE if (directory / FILES[name]).is_file()]
        if format is not None and format not in present:
            raise BertnasError(
                f"{directory} has no {FILES[format]} ({format}); it has: {', '.join(present) or 'no model file'}"
            )
        if not present:
            raise BertnasError(f"{directory} holds no model file ({', '.join(FILES.values())}); re-export it")
        kind = format or present[0]
        path = directory / FILES[kind]
    if kind == "plain":
        directory = path.parent
    tokenizer = _tokenizer(directory)
    if kind == "hf":
        from bertnas.model.compact import CompactBert

        return CompactBert.from_pretrained(directory, device=device), tokenizer
    if kind == "plain":
        return _plain_bert(directory, device), tokenizer
    id2label = _labels(directory)
    if kind.startswith("onnx"):
        import json

        from bertnas.export.onnx import OnnxModel

        runner = OnnxModel(path)
        positions = json.loads(runner.metadata.get("arch") or "{}").get("max_position_embeddings")
        return FileModel(runner, path, kind, id2label, positions), tokenizer
    from bertnas.export.formats import TfliteModel

    runner = TfliteModel(path)
    return FileModel(runner, path, kind, id2label, runner.seq_len), tokenizer


def predict(
    model: Any, tokenizer: Any, texts: list[str], pairs: list[str] | None = None, batch_size: int = 32
) -> list[Prediction]:
    """Label and scores for each text (or text pair) with a model :func:`load` returned."""
    if pairs is not None and len(pairs) != len(texts):
        raise BertnasError(f"{len(texts)} texts but {len(pairs)} second segments; give one per text or none")
    id2label = _id2label(model)
    max_length = getattr(model, "max_length", None) or _max_length(model, tokenizer)
    results = []
    for start in range(0, len(texts), batch_size):
        second = pairs[start : start + batch_size] if pairs is not None else None
        batch = tokenizer(
            texts[start : start + batch_size],
            second,
            return_tensors="pt",
            padding=True,
            truncation=True,
            max_length=max_length,
        )
        inputs = {key: batch[key] for key in ("input_ids", "attention_mask", "token_type_ids") if key in batch}
        if "token_type_ids" not in inputs:
            inputs["token_type_ids"] = torch.zeros_like(inputs["input_ids"])
        with torch.inference_mode():
            logits = model(**inputs).logits.float().cpu()
        for row in logits:
            if row.numel() == 1:  # regression (STS-B): the value itself
                value = float(row[0])
                results.append(Prediction(id2label.get(0, "score"), value, {id2label.get(0, "score"): value}))
                continue
            probs = torch.softmax(row, dim=-1)
            scores = {id2label.get(i, f"LABEL_{i}"): float(p) for i, p in enumerate(probs)}
            best = int(probs.argmax())
            results.append(Prediction(id2label.get(best, f"LABEL_{best}"), float(probs[best]), scores))
    return results


# ---------------------------------------------------------------------- helpers
def _tokenizer(directory: Path) -> Any:
    from transformers import AutoTokenizer, BertConfig

    if not (directory / "tokenizer_config.json").is_file() and not (directory / "tokenizer.json").is_file():
        raise BertnasError(f"{directory} has no tokenizer files; re-export the model")
    try:  # a BertConfig: never the directory's own config (whose auto_map points at code)
        return AutoTokenizer.from_pretrained(str(directory), config=BertConfig())
    except (OSError, ValueError) as error:
        raise BertnasError(f"{directory}: cannot load its tokenizer ({str(error).splitlines()[0]})") from None


def _labels(directory: Path) -> dict[int, str]:
    config = directory / "config.json"
    if not config.is_file():
        return {}
    data = read_json(config, "model config")
    labels = data.get("id2label") if isinstance(data, dict) else None
    return {int(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {}


def _plain_bert(directory: Path, device: str) -> Any:
    from transformers import BertForSequenceClassification

    data = read_json(directory / "config.json", "model config")
    if not isinstance(data, dict) or data.get("model_type") != "bert":
        raise BertnasError(f"{directory / 'config.json'}: not a plain BERT config (model_type bert)")
    try:
        model = BertForSequenceClassification.from_pretrained(str(directory), use_safetensors=True)
    except (OSError, ValueError) as error:
        raise BertnasError(f"{directory}: cannot load the plain BERT ({str(error).splitlines()[0]})") from None
    return model.to(device).eval()


def _id2label(model: Any) -> dict[int, str]:
    if isinstance(model, FileModel):
        return model.id2label
    labels = getattr(getattr(model, "config", None), "id2label", None) or {}
    return {int(k): str(v) for k, v in labels.items()}


def _max_length(model: Any, tokenizer: Any) -> int:
    positions = int(getattr(getattr(model, "config", None), "max_position_embeddings", 512) or 512)
    limit = getattr(tokenizer, "model_max_length", positions) or positions
    return int(min(positions, limit if math.isfinite(limit) else positions))
