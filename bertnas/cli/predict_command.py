"""``bertnas predict``: labels and scores of an exported model for some text."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from bertnas.cli.main import app

MAX_INPUT_BYTES = 64 * 1024 * 1024


@app.command("predict")
def predict_command(
    model: Path = typer.Argument(..., help="An exported model directory (or one of its .onnx/.tflite files)."),
    text: list[str] = typer.Option(None, "--text", help="A text to classify (repeat for several)."),
    file: Path | None = typer.Option(
        None, "--file", help='JSONL: one {"text": ..., "text_pair": ...} object (or a JSON string) per line.'
    ),
    format_name: str | None = typer.Option(
        None, "--format", help="Which file of the directory: hf, plain, onnx, onnx-int8, tflite, tflite-int8."
    ),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per input: label, score, scores."),
    batch_size: int = typer.Option(32, "--batch-size", help="Texts per forward pass."),
) -> None:
    """Classify text with an exported model: one line per input, label and score."""
    from bertnas.errors import BertnasError

    texts = list(text or [])
    pairs: list[str | None] = [None] * len(texts)
    if file is not None:
        more, more_pairs = _read_jsonl(file)
        texts += more
        pairs += more_pairs
    if not texts:
        raise BertnasError("nothing to classify: give --text TEXT or --file in.jsonl")
    if batch_size < 1:
        raise BertnasError(f"--batch-size {batch_size}: at least 1")
    if any(pair is not None for pair in pairs) and any(pair is None for pair in pairs):
        raise BertnasError("some inputs have a text_pair and some not; give every input one, or none")

    from bertnas.deploy import load, predict

    loaded, tokenizer = load(model, format=format_name)
    second = [pair or "" for pair in pairs] if pairs and pairs[0] is not None else None
    for prediction, source in zip(predict(loaded, tokenizer, texts, second, batch_size), texts, strict=True):
        if as_json:
            record = {"text": source, "label": prediction.label, "score": prediction.score, "scores": prediction.scores}
            typer.echo(json.dumps(record))
        else:
            typer.echo(f"{prediction.label}\t{prediction.score:.4f}\t{source}")


def _read_jsonl(path: Path) -> tuple[list[str], list[str | None]]:
    from bertnas.errors import BertnasError
    from bertnas.readers import read_text

    texts: list[str] = []
    pairs: list[str | None] = []
    for number, line in enumerate(read_text(path, "input file", max_bytes=MAX_INPUT_BYTES).splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise BertnasError(f"{path}:{number}: not JSON ({error.msg}); one JSON object per line") from None
        if isinstance(record, str):
            record = {"text": record}
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            raise BertnasError(f'{path}:{number}: text: give {{"text": "..."}} (and optionally "text_pair")')
        pair = record.get("text_pair")
        if pair is not None and not isinstance(pair, str):
            raise BertnasError(f"{path}:{number}: text_pair: a string, or leave it out")
        texts.append(record["text"])
        pairs.append(pair)
    return texts, pairs
