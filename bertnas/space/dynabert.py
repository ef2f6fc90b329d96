"""DynaBERT's depth and width rules (Hou et al., NeurIPS 2020).

DynaBERT does not choose per-layer shapes: one width multiplier ``m_w`` sets the heads
and FFN neurons of every layer, and one depth multiplier ``m_d`` drops layers evenly.
These two functions reproduce the rules of the official code
(``huawei-noah/Pretrained-Language-Model``, ``DynaBERT/transformers/modeling_bert.py``)
so that a ``dynabert`` space yields exactly DynaBERT's sub-networks.

Multipliers are read as exact decimals (``Fraction("0.75")``), never as binary floats:
``floor(i / m_d)`` with a float ``m_d`` such as 0.6 can land just below an integer and
drop the wrong layer.
"""

from __future__ import annotations

import math
from fractions import Fraction

from bertnas.errors import BertnasError


def exact(value: float | int | str) -> Fraction:
    """``value`` as the exact decimal it was written as (``0.7`` -> 7/10, not the nearest binary float)."""
    return Fraction(str(value))


def round_half_up(value: Fraction) -> int:
    """Round to the nearest integer, halves upwards (Python's ``round`` rounds halves to even)."""
    return math.floor(value + Fraction(1, 2))


def _check_multiplier(what: str, multiplier: float) -> Fraction:
    if isinstance(multiplier, bool) or not isinstance(multiplier, (int, float)) or not 0 < multiplier <= 1:
        raise BertnasError(f"{what} multiplier {multiplier!r} must be a number in (0, 1]")
    return exact(multiplier)


def dynabert_kept_layers(num_layers: int, depth_mult: float) -> tuple[int, ...]:
    """Backbone layers DynaBERT keeps at depth multiplier ``depth_mult``.

    ``depth = round(m_d * L)`` layers are kept, the i-th being ``floor(i / m_d)``. For
    L=12: m_d=0.75 keeps 0,1,2,4,5,6,8,9,10 and m_d=0.5 keeps 0,2,4,6,8,10.

    ``round`` is Python's round-half-to-even, as in the official code (it calls the
    built-in ``round`` on ``depth_mult * len(self.layer)``). This matters only at exact
    halves: L=6, m_d=0.75 gives 4.5, so 4 layers (0,1,2,4) as DynaBERT itself would
    keep on a 6-layer backbone, not 5. At least one layer is always kept.
    """
    if num_layers < 1:
        raise BertnasError(f"num_layers={num_layers} must be a positive integer")
    m_d = _check_multiplier("depth", depth_mult)
    depth = max(1, round(m_d * num_layers))  # Fraction.__round__: exact, half to even
    # i < depth <= m_d*L + 1/2 keeps floor(i/m_d) < L; exact arithmetic keeps 3/0.75 at 4.
    return tuple(math.floor(i / m_d) for i in range(depth))


def dynabert_width(num_heads: int, ffn_dim: int, width_mult: float) -> tuple[int, int]:
    """``(heads, ffn_dim)`` DynaBERT keeps per layer at width multiplier ``width_mult``.

    ``heads = round(N_H * m_w)`` (halves up, at least 1) and ``ffn = int(d_ff * heads /
    N_H)``, so the FFN shrinks by exactly the fraction of heads kept. The official code
    rounds halves to even, which can keep 0 heads (2 heads at m_w=0.25); the two agree
    whenever ``N_H * m_w`` is not a half, which covers 12 heads at 1, .75, .5, .25.
    Head dims, hidden size and embeddings are left alone.
    """
    if num_heads < 1 or ffn_dim < 1:
        raise BertnasError(f"num_heads={num_heads} and ffn_dim={ffn_dim} must be positive integers")
    m_w = _check_multiplier("width", width_mult)
    heads = max(1, round_half_up(m_w * num_heads))
    return heads, max(1, ffn_dim * heads // num_heads)
