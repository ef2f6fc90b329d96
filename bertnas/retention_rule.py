"""The kept-token rule of PoWER-BERT retention, in integers.

A leaf module (no imports): :mod:`bertnas.arch` re-exports it, the model code uses it,
and every exported Hugging Face model directory carries a copy of this file, so the
compact model computes the same counts with or without bertnas installed.
"""

# Retention is stored with this many decimals so that hashes are stable.
RETENTION_DECIMALS = 6
RETENTION_SCALE = 10**RETENTION_DECIMALS


def retention_units(retention: float) -> int:
    """Retention in millionths (its stored precision), as an integer.

    Kept-token counts are integer arithmetic on these units, so Python, numpy, torch and
    exported ONNX graphs round alike: a float epsilon (``ceil(r * n - 1e-9)``) does not
    survive ONNX export, where ``0.56 * 25`` then keeps 15 tokens instead of 14.
    """
    return round(retention * RETENTION_SCALE)


def kept_tokens(retention: float, length: int) -> int:
    """Tokens kept out of ``length`` real tokens at ``retention`` ([CLS] always kept).

    Rounds up (exactly: ``ceil(units * length / 10**6)`` in integers), so a layer never
    drops more than asked and ``0.7 * 10`` keeps 7. The supernet, the compact model, the
    ONNX export, the cost model and the latency predictors all use this one rule.
    """
    if retention >= 1.0:
        return length
    kept = (retention_units(retention) * length + RETENTION_SCALE - 1) // RETENTION_SCALE
    return max(1, min(length, kept))
