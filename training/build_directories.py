"""Where a dataset build happens: a work directory beside the output, swapped into place when done.

A build writes into `.NAME.building@HOST-PID` and renames it to NAME only when complete,
so a crash never leaves a half dataset under the real name. Builds killed outright
leave their work directories behind; the next build into the same place removes those
whose process is gone.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
from pathlib import Path

from m2vae_training.interrupts import deferred_sigint


def swap_into_place(building: Path, out_dir: Path) -> None:
    """Rename the finished build to `out_dir`, replacing an older dataset there.

    Ctrl-C waits until both renames are done: between them `out_dir` does not exist.
    """
    old = work_directory(out_dir, "old")
    with deferred_sigint():
        if out_dir.exists():
            os.replace(out_dir, old)
        os.replace(building, out_dir)
    shutil.rmtree(old, ignore_errors=True)


def work_directory(out_dir: Path, kind: str) -> Path:
    """`.NAME.KIND@HOST-PID` beside `out_dir`: this build's directory, or the dataset it replaces.

    The host and process id tell a later build whether its owner is gone; a process id
    alone cannot, on a filesystem several machines share.
    """
    return out_dir.parent / f"{_work_prefix(out_dir, kind)}{os.getpid()}"


def _work_prefix(out_dir: Path, kind: str) -> str:
    return f".{out_dir.name}.{kind}@{socket.gethostname()}-"


def remove_abandoned_builds(out_dir: Path) -> None:
    """Delete the half-built or replaced directories of builds into `out_dir` whose process is gone.

    A build killed outright (SIGKILL, power loss) cannot clean up after itself. Only this
    host's are judged: another machine's process ids mean nothing here.
    """
    for kind in ("building", "old"):
        prefix = _work_prefix(out_dir, kind)
        for leftover in out_dir.parent.glob(glob.escape(prefix) + "*"):
            pid = leftover.name.removeprefix(prefix)
            if pid.isdigit() and not process_alive(int(pid)):
                shutil.rmtree(leftover, ignore_errors=True)


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True
