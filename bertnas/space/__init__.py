"""Search spaces: which BERT subnets a search may pick.

A space is a YAML file (``search_spaces/NAME.yaml``, schema in :mod:`bertnas.space.spec`)
bound to a backbone's sizes::

    from bertnas.space import load_space

    space = load_space("unified").bind(limits, backbone="all-MiniLM-L6-v2")
    arch = space.sample(0)                  # an ArchConfig
    values = space.to_values(arch)          # {"hidden_size": 384, "keep.1": True, ...}
    assert space.from_values(values) == arch

The bound :class:`SearchSpace` samples, enumerates, suggests through Optuna, encodes,
mutates and crosses over configs, all through one define-by-run decode routine.
"""

from bertnas.space.dynabert import dynabert_kept_layers, dynabert_width
from bertnas.space.space import Dimension, SearchSpace
from bertnas.space.spec import SpaceSpec, list_spaces, load_space

__all__ = [
    "Dimension",
    "SearchSpace",
    "SpaceSpec",
    "dynabert_kept_layers",
    "dynabert_width",
    "list_spaces",
    "load_space",
]
