"""The compression families' own spaces, as sub-spaces of a larger one (``unified``)."""

from __future__ import annotations

from bertnas.space.space import SearchSpace
from bertnas.space.spec import load_space

#: Each family's space file; every one is a sub-space of ``unified`` (tested).
FAMILY_SPACES = ("dynabert", "powerbert", "schubert", "mobilebert")


def family_spaces(space: SearchSpace) -> list[SearchSpace]:
    """The family spaces, bound like ``space``, that ``space`` contains (its largest and
    smallest configs checked); ``space`` itself is left out."""
    found = []
    for name in FAMILY_SPACES:
        if name == space.name:
            continue
        family = load_space(name).bind(space.limits, backbone=space.backbone)
        if all(space.contains(arch) for arch in (family.largest(), family.smallest())):
            found.append(family)
    return found


def family_groups(family: SearchSpace) -> frozenset[str]:
    """The dimension groups of a larger space that ``family`` moves along: its own groups, with
    DynaBERT's global ``width`` multiplier standing for the per-layer ``heads`` and ``ffn_dim``."""
    groups = set(family.groups())
    if "width" in groups:
        groups = (groups - {"width"}) | {"heads", "ffn_dim"}
    return frozenset(groups)
