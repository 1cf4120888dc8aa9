"""A command's one error line, and where the error came from when the line alone would not say.

m2vae-train and m2vae-eval print a user's mistake (a bad bag, a wrong flag, a model that
does not fit the data) as one line, and they catch ValueError for that. Another library's
Python code raises ValueError too, when this package calls it wrongly: such a line
("x and y can be no greater than 2D") would name no file, so it names the one that raised
it. M2VAE_TRACEBACK=1 prints the whole traceback of any error, for a report.
"""

from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path

import m2vae_training

import m2vae_ros

_OWN_MODULES = tuple(Path(package.__file__).resolve().parent for package in (m2vae_ros, m2vae_training))


def print_error(prog: str, exc: BaseException, where: str = "") -> None:
    """`PROG: error: ...` on stderr, naming the file when a ValueError came from another library."""
    line = f"{prog}: error{where}: {exc}"
    frames = traceback.extract_tb(exc.__traceback__)
    if isinstance(exc, ValueError) and frames and not _is_own(frames[-1].filename):
        raised_in = f"{_library_path(frames[-1].filename)}:{frames[-1].lineno}"
        line += f" (raised in {raised_in}; M2VAE_TRACEBACK=1 prints the traceback)"
    print(line, file=sys.stderr)
    if os.environ.get("M2VAE_TRACEBACK"):
        traceback.print_exception(exc, file=sys.stderr)


def _is_own(filename: str) -> bool:
    path = Path(filename).resolve()
    return any(path.is_relative_to(own) for own in _OWN_MODULES)


def _library_path(filename: str) -> str:
    """`numpy/core/function_base.py` for a file under site-packages; any other path as it is."""
    parts = Path(filename).parts
    return str(Path(*parts[parts.index("site-packages") + 1:])) if "site-packages" in parts else filename
