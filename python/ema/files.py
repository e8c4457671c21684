"""Reading and writing safetensors files with libema's strict reader and
atomic writer (ema_file_* in include/ema/ema.h), and turning a checkpoint
into an inference file (ema_extract_averages).
"""
import ctypes

import numpy as np

from . import _arrays, _lib
from ._context import encode_name, fspath
from .errors import InvalidArgumentError, NotFoundError, OutOfMemoryError, UnsupportedError

__all__ = ["SafetensorsFile", "open_file", "read_safetensors", "write_safetensors",
           "extract_averages"]

_lib_ = _lib.lib

# safetensors dtype string -> numpy dtype (little-endian, as stored)
_NP = {
    "F64": "<f8", "F32": "<f4", "F16": "<f2",
    "I64": "<i8", "I32": "<i4", "I16": "<i2", "I8": "i1",
    "U64": "<u8", "U32": "<u4", "U16": "<u2", "U8": "u1",
    "BOOL": "?",
    "BF16": "<u2",  # bit patterns; converted to float32 unless bf16="bits"
}


def _raise(status, err):
    _lib.raise_for(status, _lib.errtext(err))


class TensorInfo(tuple):
    """(name, dtype, shape, nbytes) of one tensor of a file; dtype is the
    file's string ("F32", "BF16", "U8", ...)."""

    __slots__ = ()

    def __new__(cls, name, dtype, shape, nbytes):
        return super().__new__(cls, (name, dtype, shape, nbytes))

    name = property(lambda self: self[0])
    dtype = property(lambda self: self[1])
    shape = property(lambda self: self[2])
    nbytes = property(lambda self: self[3])


def _info(ft):
    shape = tuple(int(ft.shape[i]) for i in range(ft.ndim))
    return TensorInfo(ft.name.decode("utf-8"), ft.dtype_name.decode("ascii"), shape, int(ft.nbytes))


class SafetensorsFile:
    """An open safetensors file (ema.open_file(path)). The header is read and
    validated at open; tensors are read on demand. Use as a context manager
    or call close(). Mapping-like: keys(), info(name), f[name], len(f)."""

    def __init__(self, path, bf16="float32"):
        if bf16 not in ("float32", "bits"):
            raise InvalidArgumentError(f"bf16 must be 'float32' or 'bits', got {bf16!r}")
        self.path = path
        self._bf16 = bf16
        self._f = ctypes.c_void_p()
        err = _lib.errbuf()
        st = _lib_.ema_file_open(ctypes.byref(self._f), fspath(path), err, _lib.ERRCAP)
        if st != 0:
            self._f = None
            _raise(st, err)
        ft = _lib.FileTensor()
        self._infos = {}
        for i in range(_lib_.ema_file_count(self._f)):
            if _lib_.ema_file_tensor_at(self._f, i, ctypes.byref(ft)) == 0:
                inf = _info(ft)
                self._infos[inf.name] = inf
        self.metadata = {}
        k, v = ctypes.c_char_p(), ctypes.c_char_p()
        for i in range(_lib_.ema_file_metadata_count(self._f)):
            if _lib_.ema_file_metadata_at(self._f, i, ctypes.byref(k), ctypes.byref(v)) == 0:
                self.metadata[k.value.decode("utf-8")] = v.value.decode("utf-8")

    def _handle(self):
        if not self._f:
            raise InvalidArgumentError(f"{self.path!r} was closed")
        return self._f

    def keys(self):
        """Tensor names in the file's header order."""
        return list(self._infos)

    def __iter__(self):
        return iter(self._infos)

    def __len__(self):
        return len(self._infos)

    def __contains__(self, name):
        return name in self._infos

    def info(self, name):
        try:
            return self._infos[name]
        except KeyError:
            raise NotFoundError(f"{self.path!r} has no tensor called {name!r}") from None

    def read_bytes(self, name, offset=0, length=None):
        """Raw little-endian bytes [offset, offset+length) of a tensor."""
        inf = self.info(name)
        if length is None:
            length = inf.nbytes - offset
        buf = np.empty(max(0, length), dtype=np.uint8)
        self._read_into(name, offset, buf.ctypes.data, length)
        return buf.tobytes()

    def _read_into(self, name, offset, ptr, length):
        h = self._handle()
        st = _lib_.ema_file_read(h, encode_name(name), offset, ctypes.c_void_p(ptr or None), length)
        if st != 0:
            _lib.raise_for(st, _lib_.ema_file_last_error(h).decode("utf-8", "replace"))

    def __getitem__(self, name):
        """The tensor as a new numpy array. BF16 comes as float32 (exact), or
        as uint16 bit patterns with open_file(path, bf16="bits")."""
        inf = self.info(name)
        npd = _NP.get(inf.dtype)
        if npd is None:
            raise UnsupportedError(
                f"tensor {name!r} has dtype {inf.dtype}, which numpy cannot hold; read its bytes "
                f"with read_bytes({name!r})")
        try:
            a = np.empty(inf.shape, dtype=npd)
        except MemoryError:
            raise OutOfMemoryError(
                f"tensor {name!r} of shape {list(inf.shape)} ({inf.nbytes} bytes) does not fit in memory") from None
        except ValueError as e:  # numpy's limits: rank > 32, a shape whose size overflows
            raise UnsupportedError(
                f"tensor {name!r} of shape {list(inf.shape)} cannot be a numpy array ({e}); read its bytes "
                f"with read_bytes({name!r})") from None
        if inf.nbytes:
            self._read_into(name, 0, a.ctypes.data, inf.nbytes)
        if inf.dtype == "BF16" and self._bf16 == "float32":
            a = (a.astype(np.uint32) << 16).view(np.float32)
        return a

    def to_dict(self):
        return {n: self[n] for n in self._infos}

    def close(self):
        f, self._f = self._f, None
        if f:
            _lib_.ema_file_close(f)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


def open_file(path, bf16="float32"):
    """Open a safetensors file (any writer's) with libema's strict checks.
    Raises FormatError (ValueError) for a malformed file, FileError (OSError)
    when it cannot be read."""
    return SafetensorsFile(path, bf16=bf16)


def read_safetensors(path, bf16="float32"):
    """{name: numpy array} of every tensor of a safetensors file, and nothing
    else (the metadata is open_file(path).metadata)."""
    with open_file(path, bf16=bf16) as f:
        return f.to_dict()


def write_safetensors(path, tensors, metadata=None):
    """Write {name: array} (numpy arrays or CPU torch tensors, C-contiguous,
    dtypes float32/64/16, bfloat16 (torch), int32, int64) and optional
    {str: str} metadata to path, atomically (a failure leaves any previous
    file untouched)."""
    if not isinstance(tensors, dict):
        raise InvalidArgumentError("tensors must be a dict {name: array}")
    n = len(tensors)
    entries = (_lib.FileEntry * max(1, n))()
    keep = []
    for i, (name, obj) in enumerate(tensors.items()):
        d = _arrays.describe(obj, repr(name), writable=False)
        if d.dtype is None:
            raise InvalidArgumentError(
                f"{name!r} has dtype {_arrays.dtype_label(d)}; libema writes float32, float64, "
                f"float16, bfloat16, int32 and int64")
        _arrays.check_dims(d, repr(name))
        shape = _arrays.shape_arg(d.shape)
        bname = encode_name(name, "tensor name")
        keep += [d, shape, bname]
        entries[i].name = bname
        entries[i].dtype = d.dtype
        entries[i].ndim = len(d.shape)
        entries[i].shape = ctypes.cast(shape, ctypes.POINTER(ctypes.c_int64))
        entries[i].data = d.ptr or None
    meta = list((metadata or {}).items())
    flat = []
    for k, v in meta:
        if not isinstance(k, str) or not isinstance(v, str):
            raise InvalidArgumentError("metadata must map str to str")
        flat += [k.encode("utf-8"), v.encode("utf-8")]
    marr = (ctypes.c_char_p * max(1, len(flat)))(*flat)
    err = _lib.errbuf()
    st = _lib_.ema_file_write(fspath(path), entries, n, marr if flat else None, len(meta), err, _lib.ERRCAP)
    if st != 0:
        _raise(st, err)


def extract_averages(checkpoint, out, ema_name=None):
    """Turn a checkpoint written by save() into an inference file: each
    average written under its model tensor's name, in the model's dtype;
    plain state copied. Loads into a model with any safetensors reader."""
    err = _lib.errbuf()
    st = _lib_.ema_extract_averages(fspath(checkpoint), fspath(out),
                                    None if ema_name is None else encode_name(ema_name), err, _lib.ERRCAP)
    if st != 0:
        _raise(st, err)
