"""A persistent cache of weight-shared evaluations, so no subnet is evaluated twice.

Keyed by (supernet fingerprint, task, split, architecture hash, dev subset). SQLite, so
several processes (search workers) can share it and a killed process corrupts nothing:
every write is one committed transaction.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS evaluations (
    supernet TEXT NOT NULL,
    task TEXT NOT NULL,
    split TEXT NOT NULL,
    arch_hash TEXT NOT NULL,
    subset TEXT NOT NULL,
    arch TEXT NOT NULL,
    metrics TEXT NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (supernet, task, split, arch_hash, subset)
)
"""


class EvalCache:
    """``get`` / ``put`` of metric dicts for subnets of one or more supernets."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._connection = sqlite3.connect(str(self.path), timeout=60)
        self._connection.execute("PRAGMA journal_mode=WAL")
        self._connection.execute(_SCHEMA)
        self._connection.commit()

    def get(self, supernet: str, task: str, split: str, arch_hash: str, subset: str) -> dict[str, Any] | None:
        row = self._connection.execute(
            "SELECT metrics FROM evaluations WHERE supernet=? AND task=? AND split=? AND arch_hash=? AND subset=?",
            (supernet, task, split, arch_hash, subset),
        ).fetchone()
        return json.loads(row[0]) if row else None

    def put(
        self, supernet: str, task: str, split: str, arch_hash: str, subset: str, arch_json: str, metrics: dict
    ) -> None:
        with self._connection:
            self._connection.execute(
                "INSERT OR REPLACE INTO evaluations VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (supernet, task, split, arch_hash, subset, arch_json, json.dumps(metrics), time.time()),
            )

    def __len__(self) -> int:
        return int(self._connection.execute("SELECT COUNT(*) FROM evaluations").fetchone()[0])

    def close(self) -> None:
        self._connection.close()
