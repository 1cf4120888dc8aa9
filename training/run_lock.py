"""One training process per run directory: a lock file that names its owner.

Two m2vae-train processes writing one RUN_DIR interleave their checkpoints and artifacts,
and each reports the artifact as its own. The first creates RUN_DIR/.m2vae-train.lock
(exclusively) with its host and process id and removes it when it ends; a second is
refused while that process lives. A lock whose process is gone (SIGKILL, power loss) is
taken over where its host is this one, so that the process can be looked up. Under
torchrun only rank 0 holds it: the other ranks write nothing.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from m2vae_training.build_directories import process_alive

LOCK_FILE = ".m2vae-train.lock"


@contextmanager
def run_lock(out: Path) -> Iterator[None]:
    """Hold RUN_DIR's lock while the block runs; ValueError naming the owner if another process holds it.

    A run directory made only for the lock is removed with it when nothing else was written
    there: a run refused before it starts leaves nothing behind.
    """
    made = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    path = out / LOCK_FILE
    while not _create(path):
        _clear_if_abandoned(path, out)
    try:
        yield
    finally:
        path.unlink(missing_ok=True)
        if made and not any(out.iterdir()):
            out.rmdir()


def refuse_if_in_use(out: Path) -> None:
    """ValueError naming the owner when a live process holds RUN_DIR's lock, without taking it.

    For --resume, which reads the run's checkpoint before the lock is taken (the device comes
    from it): a run still before its first checkpoint would otherwise be reported as one
    holding no checkpoint, not as one in use.
    """
    path = out / LOCK_FILE
    if path.exists():
        _clear_if_abandoned(path, out)


def _create(path: Path) -> bool:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as lock:
        lock.write(f"{socket.gethostname()} {os.getpid()}\n")
    return True


def _clear_if_abandoned(path: Path, out: Path) -> None:
    """Remove a lock whose process is gone; ValueError when its owner lives, or cannot be told."""
    try:
        host, pid = path.read_text(encoding="utf-8").split()
        owner = int(pid)
    except FileNotFoundError:
        return  # its owner has just ended
    except (OSError, ValueError):
        raise ValueError(f"{path} names no process; if no m2vae-train is training into {out}, "
                         "delete it") from None
    if host == socket.gethostname() and not process_alive(owner):
        path.unlink(missing_ok=True)
        return
    raise ValueError(f"{out} is being trained by another m2vae-train (process {owner} on {host}): wait "
                     f"for it to end, or give another --out (if that process is gone, delete {path})")
