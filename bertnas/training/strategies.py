"""Which subnets a supernet training step trains: small strategy classes and named recipes.

A :class:`Recipe` is the whole training strategy under one name, recorded with the
supernet (``training.json`` / ``run.json``), so that a supernet says how it was made:

- ``sampling``: where each step's random subnets come from. ``union`` draws them
  uniformly from the space (every dimension at once); ``families`` draws them in turn
  from each compression family's own sub-space (DynaBERT, PoWER-BERT, schuBERT,
  MobileBERT, the ones the space contains) and from the union, so the sub-spaces a search
  starts from are trained as often as the far corners of the union.
- ``stages``: progressive shrinking (Once-for-All). Each stage starts at a fraction of
  the steps and *releases* dimension groups; a group not yet released stays at its
  backbone-like value (:meth:`SearchSpace.restrict`). Empty: every group from step 0.
- ``label_weight``: weight of the task loss on the true labels, added to every subnet's
  distillation loss (useful when the teacher is imperfect, as on small tasks).
- ``hidden_weight``, ``distill_from``, ``random_subnets``: as in DynaBERT / OFA.
- ``attention_weight``: weight of the attention-map transfer (TinyBERT / MobileBERT): MSE
  between each layer's head-averaged attention map and that of the teacher layer it comes
  from, while no token has been dropped (0: off).
- ``augment``: input perturbation for distillation (:mod:`bertnas.training.augment`): the
  probability that a word piece of a perturbed row is replaced (half the rows of each batch;
  0: off). The task loss is kept for the unperturbed rows only.
- ``bottleneck_init``: how the bottleneck projections start: ``identity`` (the first ``b``
  channels in and back out) or ``fit`` (the output projection and norm fitted by least
  squares to the backbone layer's output, :mod:`bertnas.supernet.bottleneck_init`).

The per-step strategy objects (:class:`SubnetSampler` and its subclasses) are what the
trainer calls: ``sampler.subnets(step, total)`` gives the list of subnets for one step,
reproducibly from ``(seed, step)`` so that a resumed training draws the same ones.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from bertnas.arch import ArchConfig
from bertnas.errors import BertnasError
from bertnas.space import SearchSpace
from bertnas.space.families import family_spaces
from bertnas.space.space import DIMENSION_GROUPS


@dataclass(frozen=True)
class Stage:
    """From ``start`` (fraction of the training steps) on, ``release`` these dimension groups too."""

    start: float
    release: tuple[str, ...]


@dataclass(frozen=True)
class Recipe:
    """A named supernet-training recipe (see the module docstring for every field)."""

    name: str
    description: str
    sampling: str = "union"  # union | families
    stages: tuple[Stage, ...] = ()
    random_subnets: int = 2
    label_weight: float = 0.0
    hidden_weight: float = 0.1
    attention_weight: float = 0.0
    augment: float = 0.0
    bottleneck_init: str = "identity"  # identity | fit
    distill_from: str = "teacher"  # teacher | largest
    # The sandwich's top: the space's largest subnet ("largest"; in the unified space it has
    # stacked FFNs, about 3x the backbone's MACs) or the backbone's own shape ("backbone").
    top: str = "largest"

    def validate(self) -> None:
        if self.sampling not in ("union", "families"):
            raise BertnasError(f"recipe {self.name}: sampling={self.sampling!r} must be 'union' or 'families'")
        if self.distill_from not in ("teacher", "largest"):
            raise BertnasError(f"recipe {self.name}: distill_from={self.distill_from!r} must be 'teacher' or 'largest'")
        if self.top not in ("largest", "backbone"):
            raise BertnasError(f"recipe {self.name}: top={self.top!r} must be 'largest' or 'backbone'")
        if min(self.random_subnets, self.label_weight, self.hidden_weight, self.attention_weight) < 0:
            raise BertnasError(f"recipe {self.name}: random_subnets and loss weights must be >= 0")
        if self.bottleneck_init not in ("identity", "fit"):
            raise BertnasError(
                f"recipe {self.name}: bottleneck_init={self.bottleneck_init!r} must be 'identity' or 'fit'"
            )
        if not 0.0 <= self.augment <= 1.0:
            raise BertnasError(f"recipe {self.name}: augment={self.augment} must be a probability in [0, 1]")
        starts = [stage.start for stage in self.stages]
        if starts and (starts[0] != 0.0 or starts != sorted(starts) or not all(0 <= s < 1 for s in starts)):
            raise BertnasError(f"recipe {self.name}: stage starts {starts} must begin at 0 and increase below 1")
        for stage in self.stages:
            unknown = set(stage.release) - set(DIMENSION_GROUPS)
            if unknown:
                raise BertnasError(
                    f"recipe {self.name}: unknown dimension group {sorted(unknown)[0]!r}; "
                    f"choose from {', '.join(DIMENSION_GROUPS)}"
                )

    def released(self, step: int, total: int) -> frozenset[str] | None:
        """The dimension groups trainable at ``step`` of ``total``; None: all of them."""
        if not self.stages:
            return None
        fraction = step / max(1, total)
        groups: set[str] = set()
        for stage in self.stages:
            if fraction >= stage.start:
                groups.update(stage.release)
        return None if groups >= set(DIMENSION_GROUPS) else frozenset(groups)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


#: Shrinking order used by the ``progressive`` recipes: token retention and depth first
#: (cheap to learn, PoWER-BERT and DynaBERT's depth barely move the weights), then the
#: per-layer widths, then the residual width and head dims, then the MobileBERT structure.
_SHRINK = (
    Stage(0.0, ("retention", "depth")),
    Stage(0.2, ("heads", "ffn_dim", "width")),
    Stage(0.4, ("hidden_size", "qk_dim", "v_dim")),
    Stage(0.6, ("bottleneck", "ffn_stack", "attention_out_bias")),
)

RECIPES: dict[str, Recipe] = {
    recipe.name: recipe
    for recipe in (
        Recipe(
            "sandwich",
            "The recipe before recipes existed: largest, smallest and random subnets drawn uniformly from "
            "the union; KL to the teacher plus 0.1 x hidden-state MSE.",
        ),
        Recipe(
            "families",
            "Sandwich whose random subnets come in turn from each family sub-space and from the union; "
            "KL to the teacher plus hidden-state MSE, plus the task loss on the labels (weight 0.5).",
            sampling="families",
            label_weight=0.5,
        ),
        Recipe(
            "progressive",
            "Once-for-All progressive shrinking (retention and depth, then widths, then hidden and head dims, "
            "then bottlenecks and stacked FFNs) with family sampling and the task loss.",
            sampling="families",
            stages=_SHRINK,
            label_weight=0.5,
        ),
        Recipe(
            "budget",
            "The families recipe for a step budget: the sandwich's top is the backbone's own shape instead "
            "of the space's largest subnet (a third of its cost), so the same time buys more steps.",
            sampling="families",
            label_weight=0.5,
            top="backbone",
        ),
        Recipe(
            "budget-attention",
            "The budget recipe plus attention-map transfer from the teacher (weight 1) and hidden-state MSE "
            "at weight 1 instead of 0.1: a dense per-layer signal for tasks with few labels.",
            sampling="families",
            label_weight=0.5,
            hidden_weight=1.0,
            attention_weight=1.0,
            top="backbone",
        ),
        Recipe(
            "budget-augment",
            "The budget-attention recipe plus input perturbation: half the rows of every batch have 30 % of "
            "their word pieces replaced ([MASK] or another word piece of the batch) and are learnt from the "
            "teacher's outputs only, so a small task shows the subnets more distinct inputs.",
            sampling="families",
            label_weight=0.5,
            hidden_weight=1.0,
            attention_weight=1.0,
            augment=0.3,
            top="backbone",
        ),
        Recipe(
            "budget-fit",
            "The budget-attention recipe with the bottleneck output projections and norms fitted by least "
            "squares to each backbone layer's output before training, instead of the identity start.",
            sampling="families",
            label_weight=0.5,
            hidden_weight=1.0,
            attention_weight=1.0,
            bottleneck_init="fit",
            top="backbone",
        ),
        Recipe(
            "progressive-attention",
            "The budget-attention recipe under Once-for-All progressive shrinking: retention and depth "
            "first, then widths, then hidden and head dims, then bottlenecks and stacked FFNs.",
            sampling="families",
            stages=_SHRINK,
            label_weight=0.5,
            hidden_weight=1.0,
            attention_weight=1.0,
            top="backbone",
        ),
    )
}
DEFAULT_RECIPE = "families"


def get_recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise BertnasError(f"unknown training recipe {name!r}; choose one of {', '.join(RECIPES)}")
    return RECIPES[name]


# ---------------------------------------------------------------------- per-step strategies
class SubnetSampler(ABC):
    """The subnets one training step runs; the extension point for new training strategies."""

    @abstractmethod
    def subnets(self, step: int, total: int) -> list[ArchConfig]:
        """The subnets of step ``step`` of ``total``, the same for the same step after a resume."""


@dataclass
class Sandwich(SubnetSampler):
    """The sandwich rule: the largest subnet, the smallest and ``random_subnets`` random ones.

    ``families``: bound sub-spaces to draw the random subnets from in turn, together with
    the union (``None``: only the union). ``released``: a function of ``(step, total)``
    giving the dimension groups released so far (progressive shrinking), None for all.
    ``full_depth_until``: fraction of the steps during which every layer is kept
    (DynaBERT's width-then-depth stages).
    """

    space: SearchSpace
    random_subnets: int
    seed: int
    families: list[SearchSpace] | None = None
    recipe: Recipe | None = None
    full_depth_until: float = 0.0
    _largest: ArchConfig = field(init=False)
    _smallest: ArchConfig = field(init=False)

    def __post_init__(self) -> None:
        top = self.recipe.top if self.recipe is not None else "largest"
        self._largest = self.space.full() if top == "backbone" else self.space.largest()
        self._smallest = self.space.smallest()

    def subnets(self, step: int, total: int) -> list[ArchConfig]:
        rng = np.random.default_rng([self.seed, step])  # same subnets after a resume
        sources = [self.space, *(self.families or [])]
        randoms = []
        for k in range(self.random_subnets):
            source = sources[(step * self.random_subnets + k) % len(sources)]
            arch = source.sample(rng)
            if source is not self.space:
                arch = self.space.from_values(self.space.to_values(arch))  # the union's own form of it
            randoms.append(arch)
        archs = [self._largest, self._smallest, *randoms]
        released = None if self.recipe is None else self.recipe.released(step, total)
        if step < self.full_depth_until * total:
            released = (set(DIMENSION_GROUPS) if released is None else set(released)) - {"depth"}
        if released is not None:
            archs = [self.space.restrict(arch, frozenset(released)) for arch in archs]
        return archs


def make_sampler(space: SearchSpace, recipe: Recipe, seed: int, stages: str = "joint") -> Sandwich:
    """The per-step strategy of ``recipe`` over ``space`` (``stages='width-depth'``: DynaBERT's two stages)."""
    families = family_spaces(space) if recipe.sampling == "families" else None
    return Sandwich(
        space,
        recipe.random_subnets,
        seed,
        families=families,
        recipe=recipe,
        full_depth_until=0.5 if stages == "width-depth" else 0.0,
    )
