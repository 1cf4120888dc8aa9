"""Hold Ctrl-C while a file a crash must not corrupt is being written; treat SIGTERM as Ctrl-C.

The artifact writes its weights, then its YAML: a KeyboardInterrupt between the two
would leave a model directory whose YAML rejects its weights. Inside `deferred_sigint()`
a SIGINT is only recorded, and raised as KeyboardInterrupt once the block is done.
`timeout`, `kill` and launch shutdowns send SIGTERM, which by default ends Python with
no cleanup at all; `sigterm_as_sigint()` routes it through the same path as Ctrl-C, also in
a background job that ignores Ctrl-C. It remembers the signal, so that the process can
still end with the status a shell expects of it (`interrupted_exit_status`).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

# The last SIGTERM or SIGHUP that `sigterm_as_sigint` turned into an interrupt; None: Ctrl-C alone.
_routed: int | None = None


def sigterm_as_sigint(*, hangup: bool = False) -> None:
    """From now on a SIGTERM acts as a SIGINT: KeyboardInterrupt, or deferred inside `deferred_sigint`.

    With `hangup`, so does a SIGHUP (a closed terminal) unless it is ignored (`nohup`): for a
    process whose children the terminal's hangup does not reach. Where SIGINT is ignored (a
    job a shell script started in the background) Ctrl-C stays ignored, but SIGTERM still
    interrupts: `kill` must end the job, and through the same clean-up.
    """
    global _routed
    if threading.current_thread() is not threading.main_thread():
        return
    _routed = None
    handler = _raise_sigint if _sigint_is_ours() else _interrupt
    signal.signal(signal.SIGTERM, handler)
    if hangup and signal.getsignal(signal.SIGHUP) is not signal.SIG_IGN:
        signal.signal(signal.SIGHUP, handler)


def interrupted_exit_status() -> int:
    """The exit status for a process that an interrupt ends: 128 + the signal, as a shell reports a
    process the signal killed. 143 after a SIGTERM (`kill`, `timeout`), 129 after a SIGHUP, and
    130 otherwise (Ctrl-C), so a script can tell a user's Ctrl-C from a supervisor's stop."""
    return 128 + (signal.SIGINT if _routed is None else _routed)


def _raise_sigint(signum: int, frame: object) -> None:
    _remember(signum)
    signal.raise_signal(signal.SIGINT)


def _interrupt(signum: int, frame: object) -> None:
    _remember(signum)
    raise KeyboardInterrupt


def _remember(signum: int) -> None:
    """Note a SIGTERM or SIGHUP that interrupts (the SIGINT `_raise_sigint` raises for it is not one)."""
    global _routed
    if signum != signal.SIGINT:
        _routed = signum


@contextmanager
def default_sigterm() -> Iterator[None]:
    """SIGTERM ends the process at once inside the block, as it does without `sigterm_as_sigint`.

    For blocking C calls (a torchrun rank waiting up to 30 min at a barrier while rank 0
    builds the dataset): a Python handler would only run once the call returns.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def deferred_sigint() -> Iterator[None]:
    """Delay SIGINT, and SIGTERM acting as it, until the block ends (the outermost block, when they nest).

    A no-op outside the main thread, where signals can't be set. Where SIGINT is ignored (a
    job started in the background by a shell script), a Ctrl-C meant for the foreground
    must not stop it here either; only the SIGTERM that `sigterm_as_sigint` made interrupt
    is held then.
    """
    signals = _interrupting_signals()
    if not signals or any(isinstance(signal.getsignal(s), _Deferring) for s in signals):
        yield  # nested in another deferred block: that one raises when it ends
        return
    deferring = _Deferring()
    previous = {s: signal.signal(s, deferring) for s in signals}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if deferring.received:
        raise KeyboardInterrupt


class _Deferring:
    """The handler inside `deferred_sigint`: remembers that Ctrl-C (or a SIGTERM acting as it) came."""

    def __init__(self) -> None:
        self.received = False

    def __call__(self, signum: int, frame: object) -> None:
        _remember(signum)  # a SIGTERM held here in a job that ignores Ctrl-C comes straight to this
        self.received = True


def _sigint_is_ours() -> bool:
    """Whether this thread may handle SIGINT: the main thread (the only one that can set
    handlers) of a process that does not ignore it (a background job of a shell script)."""
    return threading.current_thread() is threading.main_thread() and (
        signal.getsignal(signal.SIGINT) is not signal.SIG_IGN
    )


def _interrupting_signals() -> list[signal.Signals]:
    """The signals that raise KeyboardInterrupt here: SIGINT (SIGTERM and SIGHUP pass through it)
    unless it is ignored; then those that `sigterm_as_sigint` made raise it themselves."""
    if threading.current_thread() is not threading.main_thread():
        return []
    if _sigint_is_ours():
        return [signal.SIGINT]
    return [s for s in (signal.SIGTERM, signal.SIGHUP) if signal.getsignal(s) is _interrupt]
