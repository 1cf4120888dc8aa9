"""A command's one error line, and the traceback behind it when the error is a defect.

m2vae-train and m2vae-eval print a user's mistake (a bad bag, a wrong flag, a model that
does not fit the data) as one line, and they catch ValueError for that. numpy, torch or
matplotlib raise ValueError too when this package calls them wrongly: a defect, whose one
line would name no file ("x and y can be no greater than 2D"). A ValueError raised outside
this package's own modules therefore comes with its traceback.
"""

from __future__ import annotations

import sys
import traceback
from pathlib import Path

import m2vae_training

import m2vae_ros

_OWN_MODULES = tuple(Path(package.__file__).resolve().parent for package in (m2vae_ros, m2vae_training))


def print_error(prog: str, exc: BaseException, where: str = "") -> None:
    """`PROG: error: ...` on stderr; for a ValueError from another library, also where it came from."""
    print(f"{prog}: error{where}: {exc}", file=sys.stderr)
    frames = traceback.extract_tb(exc.__traceback__)
    if isinstance(exc, ValueError) and frames and not _is_own(frames[-1].filename):
        print(f"{prog}: {frames[-1].filename} raised it, not one of {prog}'s checks: a defect; please "
              "report it with this traceback:", file=sys.stderr)
        traceback.print_exception(exc, file=sys.stderr)


def _is_own(filename: str) -> bool:
    path = Path(filename).resolve()
    return any(path.is_relative_to(own) for own in _OWN_MODULES)
