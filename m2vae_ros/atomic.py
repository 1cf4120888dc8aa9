"""Atomic file writes: a reader sees the old file or the new one, never half of one.

Kept free of torch so the dataset builder can use it without importing the model.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to a temporary file next to `path`, fsync it, then rename over `path`.

    The temporary file is created with mode 0666 for the kernel to narrow by the umask
    (and default ACLs), as a plain open() would: mkstemp's owner-only 0600 kept a node
    running as another user, or in a container, from reading a model trained elsewhere.
    """
    tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
