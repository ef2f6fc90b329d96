"""The three training presets, by the same names for every command that trains.

``bertnas finetune``, ``bertnas supernet train``, ``bertnas search`` (when it trains what is
missing) and study files (``preset:``) all take ``--preset quick|default|full``, default
``default``:

* ``quick``: a few minutes on 2 CPU cores (train subsets, one epoch). For trying the commands
  and for tests; its teacher and supernet are not meant to be used.
* ``default``: a step budget aimed at at most 20 minutes for teacher plus supernet on SST-2 with
  MiniLM on 2 CPU cores (epochs capped by ``max_steps``, so a small task gets all its epochs
  within the cap). README (issue 13) has what it measured and what its front reaches.
* ``full``: the whole training set for two epochs each (SST-2 on 2 CPU cores: about 43 minutes
  for the teacher and 100 for the supernet, extrapolated from timed steps).

The values live next to the configurations they fill: :data:`bertnas.training.finetune.PRESETS`
and :data:`bertnas.training.supernet_train.PRESETS`.
"""

from __future__ import annotations

from bertnas.errors import BertnasError

PRESET_NAMES = ("quick", "default", "full")
DEFAULT_PRESET = "default"
PRESET_HELP = (
    "quick: minutes, for trying commands (not a usable model); default: a step budget "
    "(SST-2 teacher + supernet ~20 min on 2 CPU cores); full: whole train split, 2 epochs."
)


def check_preset(name: str) -> str:
    if name not in PRESET_NAMES:
        raise BertnasError(f"unknown preset {name!r}; choose one of {', '.join(PRESET_NAMES)}")
    return name
