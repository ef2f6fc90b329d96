"""What a search is asked to do: :class:`SearchConfig`, from CLI flags or a study file.

A study file (``studies/*.yaml``) holds the same settings as the flags::

    task: sst2
    space: unified
    devices: {pixel4: 60ms}      # device: budget, in order (the first is optimized)
    sampler: surrogate           # surrogate (default) | nsga2 | tpe | random | evolution
    trials: 100                  # accuracy-evaluated trials to reach
    seed: 0
    # optional: backbone, teacher, preset, supernet, storage, study, out, seq_len, confidence, split,
    # dev_subset, population; for your own data (task: a directory or hf:NAME) text_columns, label_column,
    # metric, max_length

Unknown keys are errors (a typo must not fall back to a default); malformed YAML is
reported as ``FILE:LINE``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from pathlib import Path

from bertnas.backbones import DEFAULT_BACKBONE
from bertnas.errors import BertnasError, check_range
from bertnas.hardware.conformal import check_confidence
from bertnas.hardware.lengths import parse_seq_len
from bertnas.readers import read_yaml
from bertnas.search.budget import parse_budget
from bertnas.search.study import SAMPLERS
from bertnas.training.presets import check_preset


@dataclass
class SearchConfig:
    task: str
    budgets_ms: dict[str, float]  # device -> budget, in order; the first device is optimized
    space: str = "unified"
    backbone: str = DEFAULT_BACKBONE
    supernet: str | None = None  # default: the cached supernet of the teacher on the task
    # The teacher: the user's fine-tuned classifier (directory or hub id), default the one
    # ``bertnas finetune`` cached for backbone + task.
    teacher: str | None = None
    train: bool = True  # fine-tune the teacher and train the supernet when missing (bertnas.pipeline)
    preset: str = "default"  # the training preset for what is missing: quick | default | full
    trials: int = 100
    # The surrogate sampler is the default: on SST-2 (default preset) its best subnet under half the
    # full latency is 6 points above NSGA-II's, and on MRPC NSGA-II's unified front was degenerate.
    sampler: str = "surrogate"
    seed: int = 0
    storage: str | None = None  # default: sqlite in the run directory
    study: str | None = None
    out: str | None = None
    # Tokens each subnet is priced at: None (each profile's own), a count, or task:mean|p50|p90
    # (the task's real sentence lengths on the scored split; bertnas/hardware/lengths.py).
    seq_len: int | str | None = None
    # Guaranteed budgets: each budget bounds the split-conformal upper prediction at this
    # confidence (e.g. 0.95: a front point runs over its budget with probability <= 5 %),
    # from the validation residuals the device's profile stores (bertnas/hardware/conformal.py).
    confidence: float | None = None
    # Where trials are scored: "search" (the slice of train the supernet held out) or "dev" (the
    # report split; selecting on it flatters every reported figure, and run.json says so).
    split: str = "search"
    dev_subset: int | None = None  # evaluate on the first N examples of the split (faster, noisier)
    population: int | None = None  # NSGA-II / evolution / surrogate population size
    # Multi-fidelity: score this share of the evaluation data first and finish only subnets that
    # could still reach the front (accuracy and F1 tasks; others are always evaluated in full).
    fidelity: float | None = None
    references: bool = True  # evaluate the full model and DynaBERT grid for the plot
    # Start a new study with the full model and the DynaBERT grid as its first trials, so the
    # front is never worse than DynaBERT's on the same supernet (costs up to 13 evaluations).
    seed_references: bool = False
    # Start a new study with the Pareto fronts of earlier runs (e.g. of sub-space searches on the
    # same supernet): their configs that this space contains are its first trials.
    seed_from: list[str] = field(default_factory=list)
    glue_dir: str | None = None
    eval_device: str = "cpu"
    command: list[str] = field(default_factory=list)

    def validate(self) -> None:
        if self.trials < 1:
            raise BertnasError(f"--trials {self.trials} must be at least 1")
        check_range("--dev-subset", self.dev_subset, 1)
        check_range("--seed", self.seed, 0)

        self.seq_len = parse_seq_len(self.seq_len)
        if self.split not in ("search", "dev"):
            raise BertnasError(f"--split {self.split!r}: score trials on search (the held-out slice) or dev")
        if self.sampler not in SAMPLERS:
            raise BertnasError(f"unknown sampler {self.sampler!r}; choose one of {', '.join(SAMPLERS)}")
        if not self.budgets_ms:
            raise BertnasError("no device given; pass --device NAME --budget 60ms")

        check_preset(self.preset)
        if self.fidelity is not None and not 0.0 < self.fidelity < 1.0:
            raise BertnasError(f"--multi-fidelity {self.fidelity} must be a fraction between 0 and 1 (e.g. 0.3)")
        if self.confidence is not None:
            check_confidence(self.confidence)
        if self.population is not None and self.population < 2:
            raise BertnasError(f"population {self.population} must be at least 2")
        if isinstance(self.seed_from, str) or not all(isinstance(p, str) for p in self.seed_from):
            raise BertnasError(f"seed_from={self.seed_from!r} must be a list of run directories")
        for path in self.seed_from:
            if not (Path(path) / "run.json").is_file():
                raise BertnasError(f"--seed-from {path} is not a search run directory (no run.json)")

    @property
    def devices(self) -> list[str]:
        return list(self.budgets_ms)

    def default_study_name(self) -> str:
        from bertnas.data import get_task, is_glue

        devices = "+".join(f"{d}-{_budget_slug(b)}" for d, b in self.budgets_ms.items())
        task = self.task if is_glue(self.task) else get_task(self.task).name  # custom: name + data hash
        guarantee = f"-c{self.confidence:g}".replace(".", "p") if self.confidence is not None else ""
        return f"{task}-{Path(self.space).stem}-{devices}{guarantee}-{self.sampler}-seed{self.seed}"

    def run_dir(self) -> Path:
        return Path(self.out) if self.out else Path("runs") / (self.study or self.default_study_name())


def _budget_slug(ms: float) -> str:
    return f"{ms:g}ms".replace(".", "p")


_TASK_KEYS = ("text_columns", "label_column", "metric", "max_length")  # the user's data, as the CLI flags
_STUDY_KEYS = (
    {f.name for f in fields(SearchConfig)} - {"budgets_ms", "command", "train", "eval_device"}
    | {"devices"}
    | set(_TASK_KEYS)
)


def load_study_file(path: str | Path) -> SearchConfig:
    """A :class:`SearchConfig` from a study YAML file; relative paths in it are kept as written."""
    path = Path(path)
    data, _, text = read_yaml(path, "study file")
    if not isinstance(data, dict):
        raise BertnasError(f"{path}:1: a study file is a mapping (task: ..., devices: ...)")

    def where(key: str) -> str:
        match = re.search(rf"^\s*{re.escape(key)}\s*:", text, re.MULTILINE)
        return f"{path}:{text[: match.start()].count(chr(10)) + 1 if match else 1}"

    unknown = sorted(set(data) - _STUDY_KEYS)
    if unknown:
        raise BertnasError(f"{where(unknown[0])}: unknown key {unknown[0]!r}; known: {', '.join(sorted(_STUDY_KEYS))}")
    for required in ("task", "devices"):
        if required not in data:
            raise BertnasError(f"{path}:1: missing {required!r}")
    devices = data.pop("devices")
    if not isinstance(devices, dict) or not devices:
        raise BertnasError(f"{where('devices')}: devices must map device names to budgets, e.g. {{pixel4: 60ms}}")
    budgets = {}
    for device, budget in devices.items():
        try:
            budgets[str(device)] = parse_budget(budget)
        except BertnasError as error:
            raise BertnasError(f"{where(str(device))}: {error}") from None
    for key in ("fidelity", "confidence"):
        if key in data and (isinstance(data[key], bool) or not isinstance(data[key], (int, float))):
            raise BertnasError(f"{where(key)}: {key} must be a fraction, got {data[key]!r}")
    if any(key in data for key in _TASK_KEYS):
        from bertnas.data.tasks import task_spec

        options = {key: data.pop(key, None) for key in _TASK_KEYS}
        if isinstance(options["text_columns"], list):
            options["text_columns"] = ",".join(str(c) for c in options["text_columns"])
        try:
            data["task"] = task_spec(str(data["task"]), *(options[key] for key in _TASK_KEYS))
        except BertnasError as error:
            raise BertnasError(f"{where('task')}: {error}") from None
    for key in ("trials", "seed", "dev_subset", "population"):
        if key in data and data[key] is not None and (isinstance(data[key], bool) or not isinstance(data[key], int)):
            raise BertnasError(f"{where(key)}: {key} must be an integer, got {data[key]!r}")

    for key, check in (("seq_len", parse_seq_len), ("confidence", check_confidence)):
        if data.get(key) is not None:
            try:
                check(data[key])
            except BertnasError as error:
                raise BertnasError(f"{where(key)}: {error}") from None
    config = SearchConfig(budgets_ms=budgets, **data)
    config.validate()
    return config
