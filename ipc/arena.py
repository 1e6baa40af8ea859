"""The embedding arena: one float32 matrix ``[rows, dim]`` in shared memory.

Clients hand the engine precomputed vectors without copying them through a ring: a client
writes its vector into a row it owns and sends the row index in the request frame; the
engine's kernels read the rows in place. There is no allocator to share: the rows are cut
into fixed ranges when the arena is created::

    rows [0, rows_per_slot)                      client slot 0
    rows [rows_per_slot, 2 * rows_per_slot)      client slot 1
    ...
    rows [slots * rows_per_slot, rows)           the engine (vectors it computes itself)

Byte layout of the buffer (little-endian; the buffer is usually a
:class:`~stratabatch.ipc.segment.Segment` payload, so offset 0 is 64-byte aligned)::

    offset  size  field
         0     8  magic           b"SBARENA1"
         8     4  version         u32, ARENA_VERSION
        12     4  header bytes    u32, 64
        16     4  dim             u32
        20     4  slots           u32
        24     4  rows_per_slot   u32
        28     4  engine_rows     u32
        32     8  rows            u64, slots * rows_per_slot + engine_rows
        40    24  reserved        zero
        64     -  float32[rows, dim], row-major, no padding (kernels get a C-contiguous view)

The geometry lives in the buffer, so a client needs only its slot number to attach. Every
write checks the vector's shape and finiteness (a NaN row would silently poison cosine
similarities) and that the rows belong to the writer; reads may touch any row.
"""

from __future__ import annotations

import operator
import struct
from typing import Any

import numpy as np
import numpy.typing as npt

from stratabatch.ipc.errors import ArenaError, SegmentLayoutError

ARENA_MAGIC = b"SBARENA1"
"""First 8 bytes of an arena buffer."""
ARENA_VERSION = 1
"""Layout version of the arena header."""
HEADER_BYTES = 64
"""Size of the arena header; the matrix starts at this offset."""
ENGINE = -1
"""Owner id of the engine (clients are owners 0 .. slots-1)."""
MAX_DIM = 65_536
"""Largest vector dimension an arena accepts."""

_HEADER = struct.Struct("<8sIIIIIIQ")


def _in_range(name: str, value: Any, lo: int, hi: int) -> int:
    if type(value) is not int or not lo <= value <= hi:
        raise ValueError(f"{name} must be an integer in [{lo}, {hi}], got {value!r}")
    return value


class Arena:
    """A float32 ``[rows, dim]`` matrix whose rows are partitioned between slots and engine.

    Build one with :meth:`create` (the engine) or :meth:`attach` (a client, or another
    reader); the constructor is not public.

    Attributes:
        dim: Vector dimension.
        slots: Number of client slots.
        rows_per_slot: Rows each client slot owns.
        engine_rows: Rows the engine owns.
        rows: Total rows.
        owner: Whose writes this handle performs: a slot number, or :data:`ENGINE`.
    """

    def __init__(
        self, buf: Any, *, dim: int, slots: int, rows_per_slot: int, engine_rows: int, owner: int
    ) -> None:
        self.dim = dim
        self.slots = slots
        self.rows_per_slot = rows_per_slot
        self.engine_rows = engine_rows
        self.rows = slots * rows_per_slot + engine_rows
        if owner != ENGINE and not (type(owner) is int and 0 <= owner < slots):
            raise ValueError(f"owner must be a slot in [0, {slots}) or ENGINE (-1), got {owner!r}")
        self.owner = owner
        self._matrix = np.frombuffer(
            buf, dtype=np.float32, count=self.rows * dim, offset=HEADER_BYTES
        ).reshape(self.rows, dim)
        self._own = self.engine_range() if owner == ENGINE else self.slot_range(owner)
        readonly = self._matrix.view()
        readonly.flags.writeable = False
        self._readonly = readonly

    # ------------------------------------------------------------------ construction

    @staticmethod
    def nbytes(*, dim: int, slots: int, rows_per_slot: int, engine_rows: int) -> int:
        """Bytes a buffer needs to hold an arena of this geometry (header included)."""
        _in_range("dim", dim, 1, MAX_DIM)
        _in_range("slots", slots, 0, 2**20)
        _in_range("rows_per_slot", rows_per_slot, 0, 2**31 - 1)
        _in_range("engine_rows", engine_rows, 0, 2**31 - 1)
        rows = slots * rows_per_slot + engine_rows
        if rows == 0:
            raise ValueError("an arena needs at least one row: slots * rows_per_slot + engine_rows")
        return HEADER_BYTES + rows * dim * 4

    @classmethod
    def create(
        cls, buf: Any, *, dim: int, slots: int, rows_per_slot: int, engine_rows: int
    ) -> Arena:
        """Lay out a new arena in ``buf`` (zeroed rows) and return the engine's handle.

        Args:
            buf: Writable buffer of at least :meth:`nbytes` bytes, e.g. ``segment.buf``.
            dim: Vector dimension.
            slots: Number of client slots.
            rows_per_slot: Rows owned by each slot.
            engine_rows: Rows owned by the engine.

        Raises:
            ValueError: A geometry value is out of range or ``buf`` is too small.
        """
        need = cls.nbytes(
            dim=dim, slots=slots, rows_per_slot=rows_per_slot, engine_rows=engine_rows
        )
        view = memoryview(buf).cast("B")
        if view.readonly or view.nbytes < need:
            raise ValueError(
                f"the arena needs a writable buffer of {need} bytes, got "
                f"{'a read-only ' if view.readonly else ''}{view.nbytes} bytes"
            )
        rows = slots * rows_per_slot + engine_rows
        view[8:need] = bytes(need - 8)
        _HEADER.pack_into(
            view,
            0,
            b"\0" * 8,
            ARENA_VERSION,
            HEADER_BYTES,
            dim,
            slots,
            rows_per_slot,
            engine_rows,
            rows,
        )
        view[:8] = ARENA_MAGIC  # last: a reader never sees a magic over a half-written header
        return cls(
            buf,
            dim=dim,
            slots=slots,
            rows_per_slot=rows_per_slot,
            engine_rows=engine_rows,
            owner=ENGINE,
        )

    @classmethod
    def attach(cls, buf: Any, *, owner: int) -> Arena:
        """Open an arena laid out by :meth:`create`, writing as ``owner``.

        Args:
            buf: The buffer holding the arena.
            owner: The caller's client slot, or :data:`ENGINE`.

        Raises:
            SegmentLayoutError: The buffer holds no arena of this version, or its header is
                inconsistent with the buffer.
            ValueError: ``owner`` is not a slot of this arena.
        """
        view = memoryview(buf).cast("B")
        if view.nbytes < HEADER_BYTES:
            raise SegmentLayoutError(
                f"an arena buffer holds at least {HEADER_BYTES} bytes, got {view.nbytes}"
            )
        magic, version, header, dim, slots, per_slot, engine_rows, rows = _HEADER.unpack_from(
            view, 0
        )
        if magic != ARENA_MAGIC:
            raise SegmentLayoutError(f"not an arena: magic {magic!r}, expected {ARENA_MAGIC!r}")
        if version != ARENA_VERSION or header != HEADER_BYTES:
            raise SegmentLayoutError(
                f"arena layout version {version} (header {header} bytes) is not the supported "
                f"version {ARENA_VERSION} ({HEADER_BYTES} bytes)"
            )
        need = cls.nbytes(dim=dim, slots=slots, rows_per_slot=per_slot, engine_rows=engine_rows)
        if rows != slots * per_slot + engine_rows or need > view.nbytes:
            raise SegmentLayoutError(
                f"inconsistent arena header: {rows} rows of {dim} for {slots} slots x {per_slot} "
                f"+ {engine_rows} engine rows in a {view.nbytes}-byte buffer"
            )
        return cls(
            buf, dim=dim, slots=slots, rows_per_slot=per_slot, engine_rows=engine_rows, owner=owner
        )

    # ------------------------------------------------------------------ geometry

    def slot_range(self, slot: int) -> range:
        """Rows owned by client ``slot``."""
        if type(slot) is not int or not 0 <= slot < self.slots:
            raise ValueError(f"slot must be in [0, {self.slots}), got {slot!r}")
        start = slot * self.rows_per_slot
        return range(start, start + self.rows_per_slot)

    def engine_range(self) -> range:
        """Rows owned by the engine."""
        start = self.slots * self.rows_per_slot
        return range(start, start + self.engine_rows)

    @property
    def own_range(self) -> range:
        """Rows this handle may write."""
        return self._own

    @property
    def matrix(self) -> np.ndarray:
        """Read-only, zero-copy ``float32[rows, dim]`` view of every row (for kernels)."""
        return self._readonly

    def _who(self) -> str:
        return "the engine" if self.owner == ENGINE else f"slot {self.owner}"

    # ------------------------------------------------------------------ writes

    def _checked(self, values: Any, what: str) -> np.ndarray:
        """Return ``values`` as float32 after checking kind and finiteness (shape: caller)."""
        arr = np.asarray(values)
        if arr.dtype.kind not in "fiu":
            raise ArenaError(f"{what} must hold real numbers, got dtype {arr.dtype}")
        with np.errstate(over="ignore"):  # float64 beyond float32 becomes inf, refused below
            out = arr.astype(np.float32, copy=False)
        finite = np.isfinite(out)
        if not finite.all():
            where = tuple(int(i) for i in np.argwhere(~finite)[0])
            raise ArenaError(
                f"{what} must be finite in float32, got {float(arr[where])!r} at index "
                f"{where[0] if len(where) == 1 else where}"
            )
        return out

    def _check_own(self, start: int, stop: int) -> None:
        own = self._own
        if not (own.start <= start and stop <= own.stop):
            raise ArenaError(
                f"rows [{start}, {stop}) are outside the rows of {self._who()}, "
                f"[{own.start}, {own.stop})"
            )

    def write_row(self, row: int, vec: npt.ArrayLike) -> None:
        """Write one vector into ``row``.

        Raises:
            ArenaError: ``vec`` is not ``dim`` real finite numbers, or ``row`` is not the
                writer's.
        """
        if type(row) is not int:
            row = _index(row, "row")
        arr = np.asarray(vec)
        if arr.shape != (self.dim,):
            raise ArenaError(f"vector must have shape ({self.dim},), got {arr.shape}")
        checked = self._checked(arr, "vector")
        self._check_own(row, row + 1)
        self._matrix[row] = checked

    def write_rows(self, start: int, mat: npt.ArrayLike) -> range:
        """Write the rows of ``mat`` (shape ``[n, dim]``) from row ``start`` on.

        Returns:
            The rows written.

        Raises:
            ArenaError: ``mat`` is not ``[n, dim]`` real finite numbers, or a row is not the
                writer's. Nothing is written then.
        """
        if type(start) is not int:
            start = _index(start, "start")
        arr = np.asarray(mat)
        if arr.ndim != 2 or arr.shape[1] != self.dim:
            raise ArenaError(f"matrix must have shape (n, {self.dim}), got {arr.shape}")
        checked = self._checked(arr, "matrix")
        n = arr.shape[0]
        self._check_own(start, start + n)
        self._matrix[start : start + n] = checked
        return range(start, start + n)

    # ------------------------------------------------------------------ reads

    def _check_row(self, row: int) -> int:
        if type(row) is not int:
            row = _index(row, "row")
        if not 0 <= row < self.rows:
            raise ArenaError(f"row must be in [0, {self.rows}), got {row}")
        return row

    def read_row(self, row: int) -> np.ndarray:
        """Return a copy of ``row`` as ``float32[dim]``."""
        return self._matrix[self._check_row(row)].copy()

    def read_rows(self, idx: npt.ArrayLike) -> np.ndarray:
        """Return a copy of the rows at ``idx`` (any integer array), as ``float32[n, dim]``.

        Raises:
            ArenaError: ``idx`` is not integers, or an index is outside ``[0, rows)``
                (negative indices do not wrap).
        """
        ix = np.asarray(idx)
        if ix.dtype.kind not in "iu" and ix.size:
            raise ArenaError(f"row indices must be integers, got dtype {ix.dtype}")
        ix = ix.astype(np.int64, copy=False).reshape(-1)
        if ix.size and (ix.min() < 0 or ix.max() >= self.rows):
            bad = ix[(ix < 0) | (ix >= self.rows)][0]
            raise ArenaError(f"row indices must be in [0, {self.rows}), got {int(bad)}")
        return self._matrix[ix]

    def view(self, start: int, stop: int) -> np.ndarray:
        """Read-only, zero-copy view of rows ``[start, stop)``."""
        if not (type(start) is int and type(stop) is int and 0 <= start <= stop <= self.rows):
            raise ArenaError(f"need 0 <= start <= stop <= {self.rows}, got [{start}, {stop})")
        return self._readonly[start:stop]

    def close(self) -> None:
        """Drop this handle's views of the buffer so its segment can unmap at once."""
        self._matrix = self._readonly = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"<Arena {self.rows}x{self.dim} float32, {self.slots} slots x {self.rows_per_slot} "
            f"rows + {self.engine_rows} engine rows, owner={self._who()}>"
        )


def _index(value: Any, name: str) -> int:
    if isinstance(value, bool):
        raise ArenaError(f"{name} must be an integer, got bool {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise ArenaError(
            f"{name} must be an integer, got {type(value).__name__} {value!r}"
        ) from None


__all__ = [
    "ARENA_MAGIC",
    "ARENA_VERSION",
    "ENGINE",
    "HEADER_BYTES",
    "MAX_DIM",
    "Arena",
    "ArenaError",
]
