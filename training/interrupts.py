"""Hold Ctrl-C while a file a crash must not corrupt is being written.

The artifact writes its weights, then its YAML: a KeyboardInterrupt between the two
would leave a model directory whose YAML rejects its weights. Inside `deferred_sigint()`
a SIGINT is only recorded, and raised as KeyboardInterrupt once the block is done.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def deferred_sigint() -> Iterator[None]:
    """Delay SIGINT until the block ends.

    A no-op outside the main thread, where signals can't be set, and where SIGINT is
    ignored (a job started in the background by a shell script): a Ctrl-C meant for the
    foreground must not stop it here either.
    """
    off_main_thread = threading.current_thread() is not threading.main_thread()
    if off_main_thread or signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        yield
        return
    received: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received:
        raise KeyboardInterrupt
