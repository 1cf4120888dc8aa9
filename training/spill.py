"""Decoded sensor tensors spilled to flat files while a bag is read, by a decode thread of their own.

The dataset build decodes the messages it expects a sample to use as it reads them
(see dataset.py); the decodes go to one spill per modality and are copied into the
dataset's arrays once the samples are known.
"""

from __future__ import annotations

import contextlib
from collections import Counter, deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from m2vae_ros.codec import CodecError, Decoded, decode_message
from m2vae_ros.spec import ModalitySpec, ModelSpec

MAX_IN_FLIGHT = 16  # messages waiting for the decode thread: bounds the payload memory they hold


@dataclass
class DecodeStats:
    """What the dataset notes tally over one sensor's decodes: its caveats (decodes per key of
    codec.common.CAVEATS) and each decode's share of returns beyond range_max, where it has one."""

    caveats: Counter = field(default_factory=Counter)
    beyond_range: list[float] = field(default_factory=list)

    def add(self, decoded: Decoded) -> None:
        self.caveats.update(decoded.caveats)
        if decoded.beyond_range is not None:
            self.beyond_range.append(decoded.beyond_range)


class Spill:
    """One modality's decoded tensors (and masks), appended to flat files in the build directory."""

    def __init__(self, directory: Path, modality: ModalitySpec) -> None:
        self.shape = modality.shape
        self.paths = [directory / f".spill_x_{modality.name}"]
        if modality.has_mask:
            self.paths.append(directory / f".spill_mask_{modality.name}")
        self.files = [path.open("wb") for path in self.paths]
        self.rows = 0
        self.stats = DecodeStats()

    def append(self, decoded: Decoded) -> int:
        """Store one decode; returns its row."""
        self.files[0].write(np.ascontiguousarray(decoded.tensor, dtype=np.float32).tobytes())
        if len(self.files) > 1:
            self.files[1].write(np.ascontiguousarray(decoded.mask, dtype=np.bool_).tobytes())
        self.rows += 1
        self.stats.add(decoded)
        return self.rows - 1

    def close(self) -> None:
        """Stop writing (the rows written so far stay readable)."""
        for file in self.files:
            file.close()

    def read(self) -> list[np.ndarray]:
        """The stored rows as memory maps: [tensors] or [tensors, masks]."""
        self.close()
        if self.rows == 0:
            return [np.zeros((0, *self.shape), dtype) for dtype in (np.float32, np.bool_)[: len(self.paths)]]
        return [np.memmap(path, dtype=dtype, mode="r", shape=(self.rows, *self.shape))
                for path, dtype in zip(self.paths, (np.float32, np.bool_), strict=False)]

    def remove(self) -> None:
        for path in self.paths:
            path.unlink(missing_ok=True)


class DecodeThread:
    """Decodes messages into their modality's spill on one worker thread, in submission order.

    OpenCV's resizing, the costly part of a decode, releases the GIL, so on two cores it
    overlaps with reading and deserialising the next messages. A decode cannot fail
    after its message's check; should one fail, the message is simply not spilled and
    the fill step rereads it and reports the error.
    """

    def __init__(self, spec: ModelSpec, spills: list[Spill]) -> None:
        self.spec = spec
        self.spills = spills
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="m2vae-decode")
        self.in_flight: deque[Future[None]] = deque()

    def submit(self, k: int, ordinal: int, msg: Any, spill_rows: dict[int, int]) -> None:
        """Queue one decode (or, for a `Decoded` the check already made, its spilling); waits first
        when MAX_IN_FLIGHT are queued (and re-raises their errors)."""
        if len(self.in_flight) >= MAX_IN_FLIGHT:
            self.in_flight.popleft().result()
        self.in_flight.append(self.executor.submit(self._decode, k, ordinal, msg, spill_rows))

    def drain(self) -> None:
        """Wait until every queued decode is in its spill."""
        while self.in_flight:
            self.in_flight.popleft().result()

    def close(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)

    def _decode(self, k: int, ordinal: int, msg: Any, spill_rows: dict[int, int]) -> None:
        with contextlib.suppress(CodecError):
            decoded = msg if isinstance(msg, Decoded) else decode_message(msg, self.spec.modalities[k])
            spill_rows[ordinal] = self.spills[k].append(decoded)
