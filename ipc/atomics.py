"""Sequentially consistent fence and atomics on numpy arrays, as numba intrinsics.

CPython offers no memory fence and no atomic read-modify-write on shared memory, and two
processes need both: the doorbell handshake is store-then-load across processes (x86 reorders
exactly that pair without a full fence), and several writers may bump one counter. LLVM has
them, so each operation here is a numba ``@intrinsic`` that emits the LLVM instruction
(``fence seq_cst``, ``atomicrmw add``, ``cmpxchg``, ``load atomic``/``store atomic``) on the
address of ``arr[idx]``.

Every public function is an ``@njit(cache=True)`` wrapper, so it is callable from plain Python
(about 150-300 ns per call, mostly dispatch) and from other jitted code (a few ns, inlined).
They work on 1-D arrays of 32- or 64-bit integers (``int64``/``uint64`` are the intended use),
typically views of a :class:`~stratabatch.ipc.segment.Segment`. Indices are bounds-checked;
a negative index is an error, not wrap-around.
"""

from __future__ import annotations

from numba import njit, types
from numba.core import cgutils
from numba.core.errors import TypingError
from numba.extending import intrinsic

_ORDER = "seq_cst"


def _check_array(arr: types.Type, fname: str) -> types.Integer:
    if not isinstance(arr, types.Array) or arr.ndim != 1:
        raise TypingError(f"{fname}: expected a 1-D integer numpy array, got {arr}")
    dtype = arr.dtype
    # numba's types are only partly annotated: mypy does not see Integer.bitwidth
    if not isinstance(dtype, types.Integer) or dtype.bitwidth not in (32, 64):  # type: ignore[attr-defined]
        raise TypingError(f"{fname}: array dtype must be a 32- or 64-bit integer, got {dtype}")
    if not arr.mutable:
        raise TypingError(f"{fname}: the array is read-only")
    return dtype


def _check_int(value: types.Type, fname: str, what: str) -> None:
    if not isinstance(value, (types.Integer, types.IntegerLiteral, types.Boolean)):
        raise TypingError(f"{fname}: {what} must be an integer, got {value}")


def _item_pointer(context, builder, arr_ty, arr, idx_ty, idx):  # noqa: ANN001, ANN202
    ary = context.make_array(arr_ty)(context, builder, arr)
    idx = context.cast(builder, idx, idx_ty, types.intp)
    return cgutils.get_item_pointer(context, builder, arr_ty, ary, [idx], wraparound=False)


@intrinsic
def _fence(typingctx):  # noqa: ANN001, ANN202
    def codegen(context, builder, signature, args):  # noqa: ANN001, ANN202
        builder.fence(_ORDER)
        return context.get_dummy_value()

    return types.void(), codegen


@intrinsic
def _atomic_add(typingctx, arr, idx, val):  # noqa: ANN001, ANN202
    dtype = _check_array(arr, "atomic_add")
    _check_int(idx, "atomic_add", "index")
    _check_int(val, "atomic_add", "value")

    def codegen(context, builder, signature, args):  # noqa: ANN001, ANN202
        arr_v, idx_v, val_v = args
        ptr = _item_pointer(context, builder, signature.args[0], arr_v, signature.args[1], idx_v)
        val_v = context.cast(builder, val_v, signature.args[2], dtype)
        return builder.atomic_rmw("add", ptr, val_v, _ORDER)

    return dtype(arr, idx, val), codegen


@intrinsic
def _atomic_load(typingctx, arr, idx):  # noqa: ANN001, ANN202
    dtype = _check_array(arr, "atomic_load")
    _check_int(idx, "atomic_load", "index")

    def codegen(context, builder, signature, args):  # noqa: ANN001, ANN202
        arr_v, idx_v = args
        ptr = _item_pointer(context, builder, signature.args[0], arr_v, signature.args[1], idx_v)
        return builder.load_atomic(ptr, _ORDER, dtype.bitwidth // 8)

    return dtype(arr, idx), codegen


@intrinsic
def _atomic_store(typingctx, arr, idx, val):  # noqa: ANN001, ANN202
    dtype = _check_array(arr, "atomic_store")
    _check_int(idx, "atomic_store", "index")
    _check_int(val, "atomic_store", "value")

    def codegen(context, builder, signature, args):  # noqa: ANN001, ANN202
        arr_v, idx_v, val_v = args
        ptr = _item_pointer(context, builder, signature.args[0], arr_v, signature.args[1], idx_v)
        val_v = context.cast(builder, val_v, signature.args[2], dtype)
        builder.store_atomic(val_v, ptr, _ORDER, dtype.bitwidth // 8)
        return context.get_dummy_value()

    return types.void(arr, idx, val), codegen


@intrinsic
def _atomic_cas(typingctx, arr, idx, expected, new):  # noqa: ANN001, ANN202
    dtype = _check_array(arr, "atomic_cas")
    _check_int(idx, "atomic_cas", "index")
    _check_int(expected, "atomic_cas", "expected")
    _check_int(new, "atomic_cas", "new")

    def codegen(context, builder, signature, args):  # noqa: ANN001, ANN202
        arr_v, idx_v, exp_v, new_v = args
        ptr = _item_pointer(context, builder, signature.args[0], arr_v, signature.args[1], idx_v)
        exp_v = context.cast(builder, exp_v, signature.args[2], dtype)
        new_v = context.cast(builder, new_v, signature.args[3], dtype)
        pair = builder.cmpxchg(ptr, exp_v, new_v, _ORDER, _ORDER)
        return builder.extract_value(pair, 0)

    return dtype(arr, idx, expected, new), codegen


@njit(cache=True)
def _check_index(arr, idx):  # noqa: ANN001, ANN202
    if idx < 0 or idx >= arr.shape[0]:
        raise IndexError("atomic index out of range for the array")


@njit(cache=True)
def fence() -> None:
    """Full sequentially consistent memory fence (``mfence`` on x86)."""
    _fence()  # type: ignore[call-arg]  # numba supplies an intrinsic's typingctx


@njit(cache=True)
def atomic_add(arr, idx, val):  # noqa: ANN001, ANN201
    """Atomically add ``val`` to ``arr[idx]`` (wrapping) and return the previous value.

    Args:
        arr: 1-D writable array of int32/uint32/int64/uint64.
        idx: Index in ``[0, len(arr))``.
        val: Integer to add (cast to the array's dtype; use a negative value to subtract).
    """
    _check_index(arr, idx)
    return _atomic_add(arr, idx, val)


@njit(cache=True)
def atomic_load(arr, idx):  # noqa: ANN001, ANN201
    """Atomically read ``arr[idx]`` with sequentially consistent ordering."""
    _check_index(arr, idx)
    return _atomic_load(arr, idx)


@njit(cache=True)
def atomic_store(arr, idx, val) -> None:  # noqa: ANN001
    """Atomically write ``val`` to ``arr[idx]`` with sequentially consistent ordering.

    A seq_cst store is followed by a full fence on x86, so a later load in the same process
    is never reordered before it.
    """
    _check_index(arr, idx)
    _atomic_store(arr, idx, val)  # type: ignore[call-arg]  # numba supplies the typingctx


@njit(cache=True)
def atomic_cas(arr, idx, expected, new):  # noqa: ANN001, ANN201
    """Compare-and-swap: if ``arr[idx] == expected`` store ``new``; return the previous value.

    The swap happened exactly when the returned value equals ``expected``.
    """
    _check_index(arr, idx)
    return _atomic_cas(arr, idx, expected, new)


__all__ = ["atomic_add", "atomic_cas", "atomic_load", "atomic_store", "fence"]
