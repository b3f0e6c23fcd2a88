"""Stopping on SIGINT (Ctrl-C) and SIGTERM with a one-line message instead of a traceback.

The command line calls :func:`handle_stop_signals`; a signal then raises :class:`Stopped` where
the program is, except inside :func:`deferred` (training between two save points), where it is
only recorded: the training loop calls :func:`raise_if_stopped` at its next save point, after
saving. A second signal inside :func:`deferred` raises at once. Without the handlers (library
use), Python's defaults apply: Ctrl-C raises ``KeyboardInterrupt``.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator

__all__ = ["Stopped", "deferred", "handle_stop_signals", "raise_if_stopped", "stop_requested"]

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Stopped(BaseException):  # noqa: N818  (like KeyboardInterrupt, not an error of the program)
    """A stop signal arrived.

    Attributes:
        signum: the signal's number.
        exit_status: ``128 + signum``, the shell's convention (130 for SIGINT, 143 for SIGTERM).
        kept: what was kept and how to continue, set by the code that saved it ("" if nothing).
    """

    def __init__(self, signum: int, kept: str = ""):
        super().__init__(signum)
        self.signum, self.kept = signum, kept

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_status(self) -> int:
        return 128 + self.signum


_state = {"deferring": 0, "pending": None}


def _on_signal(signum: int, frame) -> None:
    if _state["deferring"] and _state["pending"] is None:
        _state["pending"] = signum
        return
    raise Stopped(signum)


def handle_stop_signals() -> Callable[[], None]:
    """Installs the handlers for SIGINT and SIGTERM; returns a function that restores the previous
    ones. Outside the main thread, where Python delivers no signals, it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = {signum: signal.signal(signum, _on_signal) for signum in SIGNALS}

    def restore() -> None:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        _state["pending"] = None

    return restore


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Inside the block a first stop signal is recorded instead of raised."""
    _state["deferring"] += 1
    try:
        yield
    finally:
        _state["deferring"] -= 1


def stop_requested() -> bool:
    """Whether a stop signal was recorded inside :func:`deferred` and not yet raised."""
    return _state["pending"] is not None


def raise_if_stopped(kept: str = "") -> None:
    """Raises :class:`Stopped` (with ``kept``) if a stop signal was recorded."""
    signum = _state["pending"]
    if signum is not None:
        _state["pending"] = None
        raise Stopped(signum, kept)
