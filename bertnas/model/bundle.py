"""The modeling code every compact model directory carries, so it loads without bertnas.

``transformers`` loads ``trust_remote_code`` models from Python files inside the model
directory (``config.json``'s ``auto_map`` names them). These are bertnas' own model files,
copied with their ``from bertnas... import`` lines made relative: the code a directory
runs is the code that produced and checked it, not a second implementation.
"""

from __future__ import annotations

import re
from pathlib import Path

from bertnas.atomic import atomic_write_text

_HERE = Path(__file__).resolve().parent
#: File in the model directory -> source file in bertnas.
SOURCES = {
    "modeling_bertnas.py": _HERE / "hf.py",
    "functional.py": _HERE / "functional.py",
    "params.py": _HERE / "params.py",
    "retention.py": _HERE / "retention.py",
    "retention_rule.py": _HERE.parent / "retention_rule.py",
}
_MODULE_FILES = {"hf": "modeling_bertnas", "functional": "functional", "params": "params"}
_MODULE_FILES |= {"retention": "retention", "retention_rule": "retention_rule"}
_IMPORT = re.compile(r"^(\s*)from bertnas(?:\.model)?\.(\w+) import ", re.MULTILINE)
_ANY_BERTNAS_IMPORT = re.compile(r"^\s*(?:from|import)\s+bertnas\b", re.MULTILINE)


def bundle_sources() -> dict[str, str]:
    """File name -> text of each bundled module, imports rewritten to relative ones."""
    texts = {}
    for name, source in SOURCES.items():

        def relative(match: re.Match[str], origin: Path = source) -> str:
            module = _MODULE_FILES.get(match.group(2))
            if module is None:
                raise RuntimeError(f"{origin.name} imports bertnas.{match.group(2)}, which the model bundle lacks")
            return f"{match.group(1)}from .{module} import "

        text = _IMPORT.sub(relative, source.read_text())
        if _ANY_BERTNAS_IMPORT.search(text):  # a bundle that needs bertnas would load only where it is installed
            raise RuntimeError(f"{source.name} still imports bertnas after the rewrite; keep bundled modules leaves")
        texts[name] = text
    return texts


def write_bundle(directory: str | Path) -> list[str]:
    """Write the bundled modeling files into ``directory``; return their names."""
    directory = Path(directory)
    for name, text in bundle_sources().items():
        atomic_write_text(directory / name, text)
    return sorted(SOURCES)
