"""Hostile input and faults: the bad-case table, the kill -9 matrix, the cost of a rejected suggestion.

    python benchmarks/bench_hostile.py [--skip-faults]

The table is the test suite's (tests/test_hostile.py: a YAML alias bomb, an oversized file,
deep nesting, binary garbage, wrong types, NaN and infinities, negative sizes, unknown keys,
10,000 layers, a symlink loop). Each case runs as ``bertnas ...`` in its own process, as a
user would run it; recorded per case: exit code, whether stderr is one line without a
traceback, wall time to the error, and the process's peak resident memory (``wait4``).
Goals: every case passes (exit 2, one line), worst time to error < 5 s, peak memory
< 500 MB.

The fault matrix is the test suite's (tests/test_faults.py, run here under pytest with a
JUnit report): per command (finetune, supernet train, search, export, profile measure) the
kill points it is killed at (SIGKILL through ``BERTNAS_KILL_AT``), whether the reruns
finished with the checked result (bit-identical weights, the same completed trials, the same
exported files, only the unfinished kernel families timed again; nothing left behind), and
the wall time of the whole chain.

The rejection cost: what a suggestion over every budget costs before the next one, for the
unified space on MiniLM under a tight pixel4 budget: a draw screened in memory (random
search, evolution, surrogate) against a rejected trial stored in the SQLite study (NSGA-II,
TPE, which learn the budget from those trials). Writes benchmarks/results/hostile_input.json.
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


FAULT_COMMANDS = {  # test in tests/test_faults.py -> (command, kill points it chains)
    "test_killed_finetuning_resumes_to_bit_identical_weights": "finetune",
    "test_killed_supernet_training_resumes_to_bit_identical_weights": "supernet train",
    "test_killed_search_keeps_every_completed_trial_and_finishes": "search",
    "test_killed_export_leaves_nothing_and_the_rerun_writes_the_same_models": "export",
    "test_killed_profile_measurement_keeps_the_timed_families": "profile measure",
}


def fault_matrix(work: Path) -> dict:
    """Run tests/test_faults.py; per command: passed, seconds, the kill points."""
    import re
    import xml.etree.ElementTree as ElementTree

    report = work / "faults.xml"
    subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", str(REPO / "tests" / "test_faults.py"),
         f"--junitxml={report}"],
        cwd=REPO, check=False,
    )  # fmt: skip
    source = (REPO / "tests" / "test_faults.py").read_text()
    results = {}
    for case in ElementTree.parse(report).getroot().iter("testcase"):
        command = FAULT_COMMANDS.get(case.get("name"))
        if command is None:
            continue
        body = source[source.index(f"def {case.get('name')}") :]
        body = body[: body.find("\ndef ", 1)]
        points = sorted(set(re.findall(r'"([a-z-]+:\d+)"', body)))
        passed = not any(child.tag in ("failure", "error") for child in case)
        results[command] = {"kill_points": points, "passed": passed, "seconds": round(float(case.get("time")), 1)}
        mark = "ok " if passed else "BAD"
        print(f"{mark} {command:<16} {results[command]['seconds']:6.1f} s  killed at {', '.join(points)}")
    return results


def _pruned() -> None:
    import optuna

    raise optuna.TrialPruned("timed: a suggestion and its rejection only")


def rejection_cost() -> dict:
    """Seconds per infeasible suggestion: screened in memory vs a rejected trial in a SQLite study."""
    import logging

    import numpy as np
    import optuna

    from bertnas.arch import ArchLimits
    from bertnas.hardware import load_predictor
    from bertnas.search.objectives import Objectives
    from bertnas.search.study import make_sampler, open_storage
    from bertnas.search.trial import TrialEvaluator
    from bertnas.space import load_space

    optuna.logging.set_verbosity(logging.WARNING)
    limits = ArchLimits(hidden_size=384, num_layers=6, num_heads=12, head_dim=32, ffn_dim=1536)
    space = load_space("unified").bind(limits, backbone="all-MiniLM-L6-v2")
    predictor = load_predictor("pixel4")
    low, high = predictor.predict(space.smallest()), predictor.predict(space.largest())
    budget = low + 0.05 * (high - low)  # feasible, but most random draws are over it
    rng = np.random.default_rng(0)
    draws, over = 2000, 0
    start = time.perf_counter()
    for _ in range(draws):
        over += predictor.predict(space.sample(rng)) > budget
    screened = (time.perf_counter() - start) / draws
    objectives = Objectives.build("accuracy", {"pixel4": budget})
    evaluator = TrialEvaluator(space, None, {"pixel4": predictor}, objectives)  # begin() never evaluates
    out = {"budget_ms": round(budget, 3), "screened_draws": draws, "over_budget_share": over / draws,
           "screened_us_per_draw": round(screened * 1e6, 1)}  # fmt: skip
    with tempfile.TemporaryDirectory() as scratch:
        for sampler in ("nsga2", "tpe"):
            storage = open_storage(f"sqlite:///{scratch}/{sampler}.db")
            study = optuna.create_study(
                storage=storage, directions=objectives.directions, sampler=make_sampler(sampler, 0, space)
            )
            trials = 40
            start = time.perf_counter()
            study.optimize(lambda trial: (evaluator.begin(trial), _pruned())[1], n_trials=trials)
            out[f"{sampler}_ms_per_rejected_trial"] = round((time.perf_counter() - start) / trials * 1e3, 1)
    print(f"rejection: screened {out['screened_us_per_draw']} us/draw ({over}/{draws} over {budget:.2f} ms); "
          f"rejected trial in SQLite: nsga2 {out['nsga2_ms_per_rejected_trial']} ms, "
          f"tpe {out['tpe_ms_per_rejected_trial']} ms")  # fmt: skip
    return out


def main() -> None:
    skip_faults = "--skip-faults" in sys.argv[1:]
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
    rejection = rejection_cost()
    faults = {} if skip_faults else fault_matrix(work)
    write_results(
        "hostile_input",
        {
            "host": host(),
            "totals": totals,
            "per_command": per_command,
            "faults": faults,
            "rejection": rejection,
            "cases": cases,
        },
    )


if __name__ == "__main__":
    main()
