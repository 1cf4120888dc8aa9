"""Append rows to a .npy file whose final row count is unknown until the end.

The prepared dataset is written sample by sample without holding it in memory; the
header, which states the shape, is written last into space reserved at the front. The
result is a plain .npy that `np.load(..., mmap_mode="r")` opens.
"""

from __future__ import annotations

from pathlib import Path
from types import TracebackType

import numpy as np

MAGIC = b"\x93NUMPY\x01\x00"
HEADER_BYTES = 128  # magic + length + dict, padded; a multiple of 64 as numpy recommends


class NpyWriter:
    """`append` arrays of shape (n, *row_shape); `close` writes the header. Use as a context manager."""

    def __init__(self, path: str | Path, dtype: np.dtype | type, row_shape: tuple[int, ...]) -> None:
        self.path = Path(path)
        self.dtype = np.dtype(dtype)
        self.row_shape = tuple(row_shape)
        self.rows = 0
        self._file = self.path.open("wb")
        self._file.write(b"\0" * HEADER_BYTES)

    def append(self, rows: np.ndarray) -> None:
        if rows.shape[1:] != self.row_shape:
            raise ValueError(f"{self.path.name}: rows of shape {rows.shape[1:]}, expected {self.row_shape}")
        self._file.write(np.ascontiguousarray(rows, dtype=self.dtype).tobytes())
        self.rows += len(rows)

    def close(self) -> None:
        if self._file.closed:
            return
        shape = (self.rows, *self.row_shape)
        text = f"{{'descr': {self.dtype.str!r}, 'fortran_order': False, 'shape': {shape!r}, }}"
        header = text.encode("latin1").ljust(HEADER_BYTES - len(MAGIC) - 2 - 1) + b"\n"
        if len(header) + len(MAGIC) + 2 != HEADER_BYTES:
            raise ValueError(f"{self.path.name}: shape {shape} does not fit the reserved .npy header")
        self._file.seek(0)
        self._file.write(MAGIC + len(header).to_bytes(2, "little") + header)
        self._file.close()

    def __enter__(self) -> NpyWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
