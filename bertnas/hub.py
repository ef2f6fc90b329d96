"""Whether the Hugging Face hub can be reached, decided in seconds, before anything asks it.

Without network, ``datasets`` and ``huggingface_hub`` retry each request with back-off
(about 25 s) before they fail, and then bertnas prints its good "cannot find" message. Before
the first hub request of a process, :func:`ensure_reachable_or_offline` opens one TCP
connection to the hub endpoint (``HF_ENDPOINT``, default huggingface.co:443) with a short
timeout; if that fails, the process switches both libraries to their offline mode, so what is
in the local Hugging Face cache still loads and everything else fails at once. Offline mode
set by the user (``HF_HUB_OFFLINE``, ``HF_DATASETS_OFFLINE``, ``TRANSFORMERS_OFFLINE``) is
respected without a probe, and behind an HTTP(S) proxy no probe is made (the proxy decides).
"""

from __future__ import annotations

import os
import socket
import sys
import threading
from urllib.parse import urlparse

PROBE_SECONDS = 3.0
_OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")
_decided: str | None = None  # the reason the hub is offline ("" once it was found reachable)


def offline_reason() -> str | None:
    """Why the hub is not reachable from this process (``None``: it is, or a proxy decides)."""
    global _decided
    for name in _OFFLINE_VARIABLES:
        if os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}:
            return f"{name} is set"
    if _decided is not None:
        return _decided or None
    if any(os.environ.get(name) for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        _decided = ""
        return None
    endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    host = endpoint.hostname or "huggingface.co"
    port = endpoint.port or (80 if endpoint.scheme == "http" else 443)
    outcome: dict[str, str] = {}

    def probe() -> None:  # in a thread: name resolution has no timeout of its own
        try:
            socket.create_connection((host, port), timeout=PROBE_SECONDS).close()
            outcome["ok"] = ""
        except OSError as error:
            outcome["error"] = error.strerror or type(error).__name__

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(PROBE_SECONDS + 0.5)
    if "ok" in outcome:
        _decided = ""
        return None
    _decided = f"{host}:{port} unreachable ({outcome.get('error', f'no answer in {PROBE_SECONDS:g} s')})"
    return _decided


def ensure_reachable_or_offline() -> str | None:
    """Put ``datasets``, ``huggingface_hub`` and ``transformers`` in offline mode when the hub
    cannot be reached; the reason, or ``None`` when it can."""
    reason = offline_reason()
    if reason is None:
        return None
    for name in _OFFLINE_VARIABLES:
        os.environ[name] = "1"  # for modules imported from now on
    for module, attribute in (
        ("huggingface_hub.constants", "HF_HUB_OFFLINE"),  # for modules already imported
        ("datasets.config", "HF_HUB_OFFLINE"),
        ("datasets.config", "HF_DATASETS_OFFLINE"),
    ):
        loaded = sys.modules.get(module)
        if loaded is not None and hasattr(loaded, attribute):
            setattr(loaded, attribute, True)
    return reason
