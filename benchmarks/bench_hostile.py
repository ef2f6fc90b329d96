"""Hostile input: every command's file inputs fed the bad-case table, each case in a fresh process.

    python benchmarks/bench_hostile.py

The table is the test suite's (tests/test_hostile.py: a YAML alias bomb, an oversized file,
deep nesting, binary garbage, wrong types, NaN and infinities, negative sizes, unknown keys,
10,000 layers, a symlink loop). Each case runs as ``bertnas ...`` in its own process, as a
user would run it; recorded per case: exit code, whether stderr is one line without a
traceback, wall time to the error, and the process's peak resident memory (``wait4``).
Goals: every case passes (exit 2, one line), worst time to error < 5 s, peak memory
< 500 MB. Writes benchmarks/results/hostile_input.json.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import host, write_results

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from test_hostile import _cases  # noqa: E402  (the test suite's table)


def run_case(work: Path, argv: list[str], kind: str, content: bytes | None) -> dict:
    path = work / f"bad.{kind}"
    if path.is_symlink() or path.exists():
        path.unlink()
    if content is None:
        os.symlink(path, path)
    else:
        path.write_bytes(content)
    args = [str(path) if a == f"FILE.{kind}" else str(work / "out") if a == "OUT" else a for a in argv]
    bertnas = Path(sys.executable).parent / "bertnas"
    start = time.perf_counter()
    process = subprocess.Popen([str(bertnas), *args], cwd=work, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    stderr = process.stderr.read().decode(errors="replace").strip()
    process.stdout.close()
    process.stderr.close()
    code = os.waitstatus_to_exitcode(status)
    lines = [line for line in stderr.splitlines() if line.strip()]
    written = sorted(p.name for p in work.iterdir() if p.name not in ("good.json", "bad.json", "bad.yaml", "cache"))
    one_line = len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in stderr
    return {
        "exit": code,
        "one_line": one_line,
        "seconds": round(seconds, 3),
        "peak_mb": round(usage.ru_maxrss / 1024, 1),
        "wrote": written,
        "passed": code == 2 and one_line and not written,
        "error": lines[-1][:200] if lines else "",
    }


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="bertnas-hostile-"))
    os.environ["BERTNAS_CACHE"] = str(work / "cache")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    per_command: dict[str, dict] = {}
    cases = []
    for command, case, argv, kind, content in _cases(work):
        result = run_case(work, argv, kind, content)
        cases.append({"command": command, "case": case, **result})
        summary = per_command.setdefault(command, {"tried": 0, "passed": 0, "worst_seconds": 0.0, "peak_mb": 0.0})
        summary["tried"] += 1
        summary["passed"] += int(result["passed"])
        summary["worst_seconds"] = max(summary["worst_seconds"], result["seconds"])
        summary["peak_mb"] = max(summary["peak_mb"], result["peak_mb"])
        mark = "ok " if result["passed"] else "BAD"
        print(f"{mark} {command:<28} {case:<20} {result['seconds']:6.2f} s {result['peak_mb']:7.1f} MB", flush=True)
    print(f"\n{'command':<28} {'passed':>9} {'worst s':>8} {'peak MB':>8}")
    for command, summary in per_command.items():
        print(
            f"{command:<28} {summary['passed']:>4}/{summary['tried']:<4} {summary['worst_seconds']:>8.2f} "
            f"{summary['peak_mb']:>8.1f}"
        )
    totals = {
        "cases": len(cases),
        "passed": sum(c["passed"] for c in cases),
        "worst_seconds": max(c["seconds"] for c in cases),
        "peak_mb": max(c["peak_mb"] for c in cases),
    }
    print(f"\nall: {totals['passed']}/{totals['cases']} passed; worst {totals['worst_seconds']:.2f} s; "
          f"peak {totals['peak_mb']:.0f} MB (goals: all, < 5 s, < 500 MB)")  # fmt: skip
    write_results("hostile_input", {"host": host(), "totals": totals, "per_command": per_command, "cases": cases})


if __name__ == "__main__":
    main()
