"""User-facing errors.

Anything a user can fix (a bad file, a bad flag, a config out of range) raises
:class:`BertnasError` with a one-line message that names what was wrong and how to
fix it. The CLI prints the message and exits with code 2, without a traceback.
"""

from __future__ import annotations


class BertnasError(ValueError):
    """An error caused by user input; its message is shown to the user as is."""


def check_range(flag: str, value: float | int | None, minimum: float, *, strict: bool = False) -> None:
    """Refuse a numeric option below ``minimum`` (or equal to it with ``strict``), NaN included;
    None (not given) passes. The message names the flag and the range."""
    if value is None:
        return
    if isinstance(value, bool) or value != value or (value <= minimum if strict else value < minimum):
        bound = f"more than {minimum:g}" if strict else f"at least {minimum:g}"
        raise BertnasError(f"{flag} {value!r} must be {bound}")
