"""Arrays in and out of the library: numpy arrays and torch tensors are
described as (pointer, ema_dtype, shape) with no copy, after checking that the
library may borrow their memory; averages are exposed as zero-copy views.

Nothing here ever copies an array to make it acceptable: a non-contiguous,
read-only, byte-swapped or non-CPU array is refused with a sentence that says
what to do.
"""
import ctypes
import sys

import numpy as np

from . import _lib
from .errors import InvalidArgumentError

_NP_TO_EMA = {
    np.dtype(np.float32): _lib.F32,
    np.dtype(np.float64): _lib.F64,
    np.dtype(np.float16): _lib.F16,
    np.dtype(np.int32): _lib.I32,
    np.dtype(np.int64): _lib.I64,
}
_EMA_TO_NP = {
    _lib.F32: np.dtype("<f4"),
    _lib.F64: np.dtype("<f8"),
    _lib.F16: np.dtype("<f2"),
    _lib.BF16: np.dtype("<u2"),  # bit patterns; numpy has no bfloat16
    _lib.I32: np.dtype("<i4"),
    _lib.I64: np.dtype("<i8"),
}


def _torch():
    return sys.modules.get("torch")


def _torch_map(torch):
    return {
        torch.float32: _lib.F32,
        torch.float64: _lib.F64,
        torch.float16: _lib.F16,
        torch.bfloat16: _lib.BF16,
        torch.int32: _lib.I32,
        torch.int64: _lib.I64,
    }


def torch_dtype(code):
    torch = _torch()
    return {v: k for k, v in _torch_map(torch).items()}[code]


class Described:
    """What the library needs to borrow one array."""

    __slots__ = ("obj", "keep", "ptr", "dtype", "shape", "kind", "nbytes")

    def __init__(self, obj, keep, ptr, dtype, shape, kind, nbytes):
        self.obj = obj      # the array as given
        self.keep = keep    # what keeps the memory alive (numpy array / detached tensor)
        self.ptr = ptr      # int address (0 for empty arrays)
        self.dtype = dtype  # ema_dtype, or None for a dtype libema has no code for
        self.shape = shape  # tuple of ints
        self.kind = kind    # "numpy" or "torch"
        self.nbytes = nbytes

    def same_memory(self, other):
        return (self.ptr == other.ptr and self.dtype == other.dtype and self.shape == other.shape)


def is_torch_tensor(obj):
    torch = _torch()
    return torch is not None and isinstance(obj, torch.Tensor)


def describe(obj, what, writable=True):
    """Describe obj (a numpy array or a torch tensor) for the library.
    what names it in messages (e.g. "'fc.weight'"); writable: the library
    will write into it (registration), so read-only numpy arrays are refused."""
    if is_torch_tensor(obj):
        return _describe_torch(obj, what)
    if isinstance(obj, np.ndarray):
        return _describe_numpy(obj, what, writable)
    raise InvalidArgumentError(
        f"{what} is a {type(obj).__name__}; libema averages numpy arrays and torch tensors in "
        f"place, so it needs the array itself (np.asarray() of a list would be a copy nobody "
        f"trains)")


def _describe_numpy(a, what, writable=True):
    if not a.flags.c_contiguous:
        raise InvalidArgumentError(
            f"{what} is not C-contiguous (strides {a.strides}); libema reads and writes the "
            f"array in place and never copies it: register a contiguous array "
            f"(np.ascontiguousarray() gives one, but then train that one)")
    if writable and not a.flags.writeable:
        raise InvalidArgumentError(
            f"{what} is read-only; libema writes into registered arrays (swap, copy_to, load)")
    if not a.flags.aligned:
        raise InvalidArgumentError(f"{what} is not aligned to its element size")
    dt = a.dtype
    if dt.byteorder == ">" or (dt.byteorder == "=" and sys.byteorder == "big"):
        raise InvalidArgumentError(f"{what} is big-endian ({dt}); libema needs little-endian values")
    code = _NP_TO_EMA.get(dt.newbyteorder("<") if dt.byteorder != "|" else dt)
    ptr = a.__array_interface__["data"][0] if a.size else 0
    return Described(a, a, ptr, code, tuple(int(s) for s in a.shape), "numpy", int(a.nbytes))


def _describe_torch(t, what):
    torch = _torch()
    if t.device.type != "cpu":
        raise InvalidArgumentError(
            f"{what} is on {t.device}; this libema build averages host (CPU) memory and will not "
            f"copy tensors between devices behind your back: keep the model on the CPU, or keep "
            f"the EMA of a CPU copy yourself")
    if t.layout != torch.strided:
        raise InvalidArgumentError(f"{what} has layout {t.layout}; only dense (strided) tensors can be averaged")
    if t.numel() and not t.is_contiguous():
        hint = ""
        if t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last):
            hint = " (it is channels_last: convert the model back with .to(memory_format=torch.contiguous_format))"
        raise InvalidArgumentError(
            f"{what} is not C-contiguous (strides {tuple(t.stride())}){hint}; libema reads and writes "
            f"the tensor in place and never copies it")
    if t.is_conj() or t.is_neg():
        raise InvalidArgumentError(f"{what} is a lazily conjugated/negated view; materialise it first")
    code = _torch_map(torch).get(t.dtype)
    keep = t.detach()  # shares the storage: keeps the memory alive even if param.data is replaced
    ptr = int(t.data_ptr()) if t.numel() else 0
    shape = tuple(int(s) for s in t.shape)
    return Described(t, keep, ptr, code, shape, "torch", int(t.numel() * t.element_size()))


def dtype_label(d):
    obj = d.obj
    return str(obj.dtype)


class _Mem:
    """Exposes library memory through the numpy array interface and keeps
    the owner (the context handle) alive for as long as a view exists."""

    def __init__(self, ptr, code, shape, owner, readonly):
        self.__array_interface__ = {
            "data": (ptr, readonly),
            "typestr": _EMA_TO_NP[code].str,
            "shape": tuple(shape),
            "version": 3,
        }
        self.owner = owner


def numpy_view(ptr, code, shape, owner, readonly=True):
    """A numpy array over ptr (no copy) that keeps owner alive. bf16 is
    exposed as uint16 bit patterns (numpy has no bfloat16)."""
    if not ptr:
        a = np.zeros(shape, dtype=_EMA_TO_NP[code])
        a.flags.writeable = not readonly
        return a
    return np.asarray(_Mem(ptr, code, shape, owner, readonly))


def torch_view(ptr, code, shape, owner):
    """A torch tensor over ptr (no copy) that keeps owner alive."""
    torch = _torch()
    if not ptr:
        return torch.zeros(shape, dtype=torch_dtype(code))
    a = np.asarray(_Mem(ptr, code, shape, owner, False))
    if code == _lib.BF16:
        a = a.view(np.int16)  # torch.from_numpy takes no uint16 (1.13); the bits are viewed as bf16 below
    t = torch.from_numpy(a)  # holds a reference to a, which holds owner
    if code == _lib.BF16:
        t = t.view(torch.bfloat16)
    return t


def view_like(d, ptr, code, shape, owner):
    """A view of library memory in the same framework as the described array."""
    if d.kind == "torch":
        return torch_view(ptr, code, shape, owner)
    return numpy_view(ptr, code, shape, owner)


def shape_arg(shape):
    arr = (ctypes.c_int64 * max(1, len(shape)))(*shape)
    return arr


def check_dims(d, what):
    if len(d.shape) > _lib.MAX_DIMS:
        raise InvalidArgumentError(f"{what} has {len(d.shape)} dimensions; libema takes at most {_lib.MAX_DIMS}")
