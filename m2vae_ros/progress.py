"""Progress bars that suit where stderr goes.

On a terminal a tqdm bar redraws in place ten times a second. Written to a file (nohup,
CI, a bench worker's log) every redraw is appended instead, and one training epoch left
about 30 kB of bars in the log. There the bar redraws every `LOG_INTERVAL` seconds, so
a log still shows how far a long job is and how fast it goes, in a few lines.
"""

from __future__ import annotations

import sys
from typing import Any

from tqdm import tqdm

TERMINAL_INTERVAL = 0.1  # seconds between redraws; tqdm's own default
LOG_INTERVAL = 30.0


def progress_bar(*, enabled: bool, **options: Any) -> tqdm:
    """A tqdm bar on stderr (disabled unless `enabled`); `options` are tqdm's."""
    # In a log, miniters=1 turns off tqdm's adaptive update count, whose monitor thread would
    # redraw every 10 s (maxinterval) whatever mininterval says.
    pace = {"mininterval": TERMINAL_INTERVAL} if sys.stderr.isatty() else {"mininterval": LOG_INTERVAL,
                                                                           "miniters": 1}
    return tqdm(file=sys.stderr, disable=not enabled, **pace, **options)
