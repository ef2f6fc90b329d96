"""User-facing errors.

Anything a user can fix (a bad file, a bad flag, a config out of range) raises
:class:`BertnasError` with a one-line message that names what was wrong and how to
fix it. The CLI prints the message and exits with code 2, without a traceback.
"""

from __future__ import annotations


class BertnasError(ValueError):
    """An error caused by user input; its message is shown to the user as is."""
