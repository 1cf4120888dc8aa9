"""A shorter GIL switch interval for the two places where one thread hands work to another.

CPython makes a thread that wants the GIL wait up to `sys.getswitchinterval()` (5 ms by
default) for a busy holder to let go. Where a worker thread is woken for every message
(the node's inference worker, the dataset builder's decode thread), that wait adds up:
0.5 ms keeps it small against a ~1 ms forward pass or a ~0.6 ms image resize.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

PROMPT_SWITCH_INTERVAL_S = 0.0005


@contextlib.contextmanager
def prompt_thread_switching() -> Iterator[None]:
    """Switch threads at least every PROMPT_SWITCH_INTERVAL_S inside the block; restore after."""
    previous = sys.getswitchinterval()
    sys.setswitchinterval(min(previous, PROMPT_SWITCH_INTERVAL_S))
    try:
        yield
    finally:
        sys.setswitchinterval(previous)
