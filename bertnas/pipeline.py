"""The main command on any machine: fine-tune the teacher, train the supernet, then search.

``bertnas search`` (and ``bertnas study run``) call :func:`plan_search` first. On a machine
where nothing is cached, the plan has three steps; each says what it makes, where, and how
long it should take here, from a short timed probe of its training step
(:mod:`bertnas.training.probe`) times its step count. :meth:`Plan.run` then runs the
missing steps with progress bars. Every step resumes: fine-tuning and supernet training
from their last checkpoint, the search from its Optuna storage, so an interrupted first run
continues where it stopped when the same command is given again.

With ``--no-train`` (``SearchConfig.train = False``) nothing is trained and a missing
teacher or supernet is the one-line error it always was. A user's own teacher
(``--teacher DIR_OR_HUB_ID``) is never fine-tuned: the plan only trains its supernet.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bertnas.data import get_task
from bertnas.errors import BertnasError
from bertnas.paths import cache_root, supernet_dir, teacher_dir
from bertnas.search.config import SearchConfig
from bertnas.training.locate import find_supernet, search_teacher

PIPELINE_SPACE = "unified"  # the supernet the pipeline trains: it contains every space


@dataclass
class Step:
    """One step of the plan: ``cached`` (nothing to do), ``run`` or ``resume``."""

    name: str
    status: str
    target: str
    estimate_s: float | None = None
    detail: str = ""
    action: Callable[[], None] | None = None


@dataclass
class Plan:
    steps: list[Step] = field(default_factory=list)

    @property
    def needs_work(self) -> bool:
        return any(step.status != "cached" for step in self.steps[:-1])

    def describe(self) -> list[str]:
        lines = ["plan:"]
        for number, step in enumerate(self.steps, 1):
            estimate = "" if step.estimate_s is None else f", about {_minutes(step.estimate_s)} here"
            lines.append(f"  {number}. {step.name} [{step.status}{estimate}] {step.target}")
            if step.detail:
                lines.append(f"     {step.detail}")
        known = [s.estimate_s for s in self.steps if s.status != "cached" and s.estimate_s is not None]
        if known:
            lines.append(f"  estimated total: {_minutes(sum(known))} (from timed probes of each training step)")
        return lines

    def run(self) -> None:
        """Run the steps that are not cached, in order (the last one, the search, is the caller's)."""
        for step in self.steps[:-1]:
            if step.status != "cached" and step.action is not None:
                step.action()


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


def plan_search(config: SearchConfig, probe: bool = True) -> Plan:
    """The steps ``config``'s search needs; sets ``config.supernet`` once the supernet's place is known.

    Raises :class:`BertnasError` when something is missing and ``config.train`` is False.
    """
    from bertnas.supernet.backbone import check_teacher
    from bertnas.training.finetune import PRESETS as TEACHER_PRESETS
    from bertnas.training.finetune import FinetuneConfig, checkpoint_dir, finetune
    from bertnas.training.supernet_train import CHECKPOINT_DIR, SupernetTrainConfig, SupernetTrainer, config_from

    info = get_task(config.task)
    plan = Plan()
    search_step = Step("search", "run", config.run_dir().as_posix(), detail=f"{config.trials} evaluations")
    if config.supernet:
        plan.steps.append(search_step)
        return plan

    teacher = search_teacher(config.teacher, config.backbone, info.name)
    if teacher is not None:
        check_teacher(teacher, info.num_labels, info.labels, info.name)
        found = find_supernet(teacher, info.name, config.space)
        if found is not None:
            config.supernet = str(found)
            plan.steps.append(search_step)
            return plan
    if not config.train:
        what = "supernet" if teacher is not None else "teacher and supernet"
        raise BertnasError(
            f"no trained {what} for task {info.name} (teacher: {teacher or 'none yet'}); run without --no-train "
            f"to train them now (preset {config.preset}), train one with `bertnas supernet train --task "
            f"{config.task}`, or give --supernet DIR"
        )

    finetune_config = FinetuneConfig(
        task=config.task, backbone=config.backbone, glue_dir=config.glue_dir, **TEACHER_PRESETS[config.preset]
    )
    teacher_target = Path(teacher) if teacher is not None else teacher_dir(config.backbone, info.name)

    def supernet_config(teacher_path: str) -> SupernetTrainConfig:
        return config_from(info.ref, teacher_path, config.preset, space=PIPELINE_SPACE, glue_dir=config.glue_dir)

    finetune_estimate = supernet_estimate = None
    if probe:
        from bertnas.training.probe import probe_finetune, probe_supernet

        if teacher is None:
            finetune_estimate = probe_finetune(finetune_config).total_seconds
        # before the teacher exists, the backbone stands in for it (the same shapes)
        timing = probe_supernet(
            supernet_config(teacher or config.backbone), backbone=None if teacher else config.backbone
        )
        supernet_estimate = timing.total_seconds
        forward = timing.seconds_per_step / max(1, 1 + 3 * timing.backward_passes) / timing.batch_size
        scored = timing.search_examples if config.split == "search" and timing.search_examples else timing.dev_examples
        # trials (mid-size subnets: ~60 % of the full model's time), then ~20 front points reported on dev
        search_step.estimate_s = 0.6 * forward * (config.trials * scored + 20 * timing.dev_examples)
        split = "the search split" if scored == timing.search_examples else "the dev split"
        search_step.detail += f" (estimate: mid-size subnets on {split}, {scored} examples)"

    if teacher is None:
        resumes = (checkpoint_dir(teacher_target) / "state.json").is_file()

        def fine_tune() -> None:
            print(
                f"[1/3] fine-tuning the teacher ({config.preset} preset) into {teacher_target}",
                file=sys.stderr,
                flush=True,
            )
            finetune(finetune_config, teacher_target)

        plan.steps.append(
            Step(
                "fine-tune the teacher",
                "resume" if resumes else "run",
                str(teacher_target),
                finetune_estimate,
                f"{config.backbone} on {info.name}, preset {config.preset}",
                fine_tune,
            )
        )

    def train_supernet() -> None:
        target = supernet_dir(str(teacher_target), info.name, PIPELINE_SPACE)
        print(f"[2/3] training the supernet ({config.preset} preset) into {target}", file=sys.stderr, flush=True)
        SupernetTrainer(supernet_config(str(teacher_target)), target).train()
        config.supernet = str(target)

    if teacher is not None:
        target = supernet_dir(teacher, info.name, PIPELINE_SPACE)
        status = "resume" if (target / CHECKPOINT_DIR).is_dir() else "run"
        where = str(target)
    else:
        status, where = "run", f"{cache_root() / 'supernets'}/ (named after the new teacher's weights hash)"
    plan.steps.append(
        Step(
            "train the supernet",
            status,
            where,
            supernet_estimate,
            f"unified space, preset {config.preset}",
            train_supernet,
        )
    )
    plan.steps.append(search_step)
    return plan
