"""Named points where the process can be made to die with ``SIGKILL``, for fault tests.

Every write bertnas does is meant to survive ``kill -9`` at any moment (see
:mod:`bertnas.atomic`). A timer-driven kill hits the interesting moments (between the two
renames of a directory swap, after an evaluation but before its trial is stored) only by
luck, so the places where a crash would matter call :func:`reached` with a name, and

    BERTNAS_KILL_AT=NAME[:K]

makes the process kill itself, exactly like ``kill -9`` from outside, the ``K``-th time
(default: the first) it reaches ``NAME``. Unset, a call costs one dictionary lookup. The
names in use are listed in :data:`POINTS`; ``tests/test_faults.py`` kills real commands at
each of them and checks what the rerun finds.
"""

from __future__ import annotations

import os
import signal

ENVIRONMENT = "BERTNAS_KILL_AT"

POINTS = {
    "train-step": "after an optimizer step of fine-tuning or supernet training",
    "checkpoint-written": "a checkpoint's files are written, before its directory is renamed into place",
    "directory-swap": "an atomic directory replace: the old one moved aside, the new one not yet in place",
    "final-weights": "supernet training: final weights moved in, completion marker not yet written",
    "trial-evaluated": "search: a subnet evaluated, its trial not yet stored",
    "front-written": "search: a front file written, the run's summary not yet",
    "model-exported": "export: one model's directory complete in the scratch export",
    "family-measured": "profile measure: one kernel family timed and saved",
}

_counts: dict[str, int] = {}


def reached(name: str) -> None:
    """Die with SIGKILL here if ``BERTNAS_KILL_AT`` names this point (and this is its K-th visit)."""
    target = os.environ.get(ENVIRONMENT)
    if not target:
        return
    point, _, nth = target.partition(":")
    if point != name:
        return
    _counts[name] = _counts.get(name, 0) + 1
    if _counts[name] >= int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
