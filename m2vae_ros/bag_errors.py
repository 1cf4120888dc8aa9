"""What reading a damaged rosbag2 recording raises, for every reader of bags: the dataset
build (training/bags.py), the replay (play.py) and the salvage both fall back to (bag_salvage.py).

rosbags does not wrap the errors of a damaged file in its own, so a reader that keeps what
came before the damage must catch these.
"""

from __future__ import annotations

import apsw
from rosbags.rosbag2.errors import ReaderError

try:  # the zstd module rosbags decompresses with
    from compression.zstd import ZstdError  # Python ≥ 3.14
except ImportError:
    from backports.zstd import ZstdError

# A damaged compressed chunk: rosbags' own checks, lz4 (RuntimeError) and zstd (ZstdError,
# which derives from Exception only).
DECOMPRESSION_ERRORS = (ReaderError, ValueError, RuntimeError, ZstdError)
# Any damaged storage file: a flipped length asks for petabytes (MemoryError) or for a seek
# beyond 2**63 (OverflowError), a damaged sqlite schema compares None with ints (TypeError),
# and KeyError is rosbags 0.11 on the empty definition rosbag2 (Iron and later) stores for a
# type the recording machine did not know.
READ_ERRORS = (apsw.Error, OSError, EOFError, KeyError, MemoryError, OverflowError, TypeError,
               *DECOMPRESSION_ERRORS)
