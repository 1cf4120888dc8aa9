"""A command's one error line, and where the error came from when the line alone would not say.

m2vae-train and m2vae-eval print a user's mistake (a bad bag, a wrong flag, a model that
does not fit the data) as one line, and they catch ValueError (and m2vae-eval torch's
RuntimeError) for that. The package's own checks raise them on a `raise` line; numpy,
torch or matplotlib raise them too when this package calls them wrongly, a defect whose
line ("x and y can be no greater than 2D") would name no file. Such an error's line names
where it was raised. M2VAE_TRACEBACK=1 prints any error's traceback, for a report.
"""

from __future__ import annotations

import linecache
import os
import sys
import traceback
from pathlib import Path

import m2vae_training

import m2vae_ros

_OWN_MODULES = tuple(Path(package.__file__).resolve().parent for package in (m2vae_ros, m2vae_training))
_INSTALLED = ("site-packages", "dist-packages")


def print_error(prog: str, exc: BaseException, where: str = "") -> None:
    """`PROG: error: ...` on stderr; for a ValueError or RuntimeError that no check of the package
    raised, followed on the same line by where it was raised."""
    line = f"{prog}: error{where}: {exc}"
    if isinstance(exc, (ValueError, RuntimeError)) and (origin := _not_a_check(exc)):
        line += f" (raised {origin}; M2VAE_TRACEBACK=1 prints the traceback)"
    print(line, file=sys.stderr)
    if os.environ.get("M2VAE_TRACEBACK", "").lower() in ("1", "true", "yes"):
        traceback.print_exception(exc, file=sys.stderr)


def _not_a_check(exc: BaseException) -> str:
    """'in numpy/...py:12' for an error from another library's Python code, 'at training/x.py:34'
    for one a call on a line of the package raised (numpy's C code has no frame of its own),
    '' for the package's own `raise`."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return ""
    last = frames[-1]
    path = Path(last.filename).resolve()
    own = next((root for root in _OWN_MODULES if path.is_relative_to(root)), None)
    if own is None:
        return f"in {_short(path)}:{last.lineno}"
    source = (last.line or linecache.getline(last.filename, last.lineno)).strip()
    if source.startswith("raise"):
        return ""
    return f"at {own.name}/{path.relative_to(own)}:{last.lineno}"


def _short(path: Path) -> str:
    """`numpy/core/function_base.py` for an installed library's file; any other path as it is."""
    parts = path.parts
    cut = next((i for i, part in enumerate(parts) if part in _INSTALLED), None)
    return str(Path(*parts[cut + 1:])) if cut is not None else str(path)
