"""Loading libema with ctypes: discovery, version check, prototypes.

Discovery order (the first that exists wins):
  1. the environment variable EMA_LIBRARY: a path to libema.so (or a name
     ctypes can load, e.g. "libema.so.0");
  2. a build tree next to the package: <repo>/build/libema.so, then
     <repo>/build-*/libema.so in name order, skipping libraries built with a
     sanitizer (they cannot be loaded into a Python that was not started with
     the sanitizer runtime);
  3. the system: ctypes.util.find_library("ema") (ldconfig, LD_LIBRARY_PATH).

The library's major version must be EXPECTED_MAJOR; its version number must
be at least MIN_VERSION (the first that has every function bound below).
"""
import ctypes
import ctypes.util
import os
import threading

from . import errors as _errors

EXPECTED_MAJOR = 0
MIN_VERSION = 100  # 0.1.0

# ema_dtype values (frozen)
F32, F64, F16, BF16, I32, I64 = 0, 1, 2, 3, 4, 5
DTYPE_NAMES = {F32: "f32", F64: "f64", F16: "f16", BF16: "bf16", I32: "i32", I64: "i64"}
DTYPE_SIZES = {F32: 4, F64: 8, F16: 2, BF16: 2, I32: 4, I64: 8}
FLOAT_DTYPES = (F32, F64, F16, BF16)

MAX_DIMS = 8
ERRCAP = 1024

_c_ctx = ctypes.c_void_p
_c_i64p = ctypes.POINTER(ctypes.c_int64)
_c_int = ctypes.c_int
_c_sz = ctypes.c_size_t
_c_dbl = ctypes.c_double
_c_str = ctypes.c_char_p
_c_vp = ctypes.c_void_p


class FileTensor(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_char_p),
        ("dtype_name", ctypes.c_char_p),
        ("supported", ctypes.c_int),
        ("dtype", ctypes.c_int),
        ("ndim", ctypes.c_int),
        ("shape", _c_i64p),
        ("numel", ctypes.c_uint64),
        ("nbytes", ctypes.c_uint64),
    ]


class FileEntry(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_char_p),
        ("dtype", ctypes.c_int),
        ("ndim", ctypes.c_int),
        ("shape", _c_i64p),
        ("data", ctypes.c_void_p),
    ]


class PosthocInfo(ctypes.Structure):
    _fields_ = [
        ("n_used", ctypes.c_size_t),
        ("residual", ctypes.c_double),
        ("cond", ctypes.c_double),
        ("coef_sum", ctypes.c_double),
    ]


class EwmOpts(ctypes.Structure):
    _fields_ = [
        ("kind", ctypes.c_int),
        ("value", ctypes.c_double),
        ("adjust", ctypes.c_int),
        ("ignore_na", ctypes.c_int),
        ("min_periods", ctypes.c_size_t),
        ("reserved", ctypes.c_uint64 * 4),
    ]


_PROTOTYPES = {
    # name: (restype, argtypes)
    "ema_version_number": (ctypes.c_uint, []),
    "ema_version_string": (_c_str, []),
    "ema_status_string": (_c_str, [_c_int]),
    "ema_dtype_size": (_c_sz, [_c_int]),
    "ema_dtype_name": (_c_str, [_c_int]),
    "ema_create": (_c_int, [ctypes.POINTER(_c_ctx), _c_dbl]),
    "ema_free": (None, [_c_ctx]),
    "ema_last_error": (_c_str, [_c_ctx]),
    "ema_track": (_c_int, [_c_ctx, _c_str, _c_vp, _c_int, _c_int, _c_i64p]),
    "ema_track_state": (_c_int, [_c_ctx, _c_str, _c_vp, _c_int, _c_int, _c_i64p]),
    "ema_retarget": (_c_int, [_c_ctx, _c_str, _c_vp]),
    "ema_count": (_c_sz, [_c_ctx]),
    "ema_tensor_info": (
        _c_int,
        [_c_ctx, _c_sz, ctypes.POINTER(_c_str), ctypes.POINTER(_c_vp), ctypes.POINTER(_c_int),
         ctypes.POINTER(_c_int), _c_i64p, ctypes.POINTER(_c_int)],
    ),
    "ema_set_half_shadows": (_c_int, [_c_ctx, _c_int]),
    "ema_set_decay": (_c_int, [_c_ctx, _c_dbl]),
    "ema_set_num_updates": (_c_int, [_c_ctx, ctypes.c_int64]),
    "ema_set_zero_debias": (_c_int, [_c_ctx, _c_int]),
    "ema_set_name": (_c_int, [_c_ctx, _c_str]),
    "ema_effective_decay": (_c_dbl, [_c_ctx]),
    "ema_apply": (_c_int, [_c_ctx]),
    "ema_apply_some": (_c_int, [_c_ctx, ctypes.POINTER(_c_str), _c_sz]),
    "ema_average": (_c_vp, [_c_ctx, _c_str, ctypes.POINTER(_c_int)]),
    "ema_average_name": (_c_int, [_c_ctx, _c_str, ctypes.c_char_p, _c_sz]),
    "ema_swap": (_c_int, [_c_ctx]),
    "ema_is_swapped": (_c_int, [_c_ctx]),
    "ema_store": (_c_int, [_c_ctx]),
    "ema_copy_to": (_c_int, [_c_ctx]),
    "ema_restore": (_c_int, [_c_ctx]),
    "ema_save": (_c_int, [_c_ctx, _c_str]),
    "ema_load": (_c_int, [_c_ctx, _c_str]),
    "ema_load_averages_into_model": (_c_int, [_c_ctx, _c_str]),
    "ema_set_threads": (_c_int, [_c_ctx, _c_int]),
    "ema_threads": (_c_int, [_c_ctx]),
    "ema_isa": (_c_str, []),
    # files
    "ema_file_open": (_c_int, [ctypes.POINTER(_c_vp), _c_str, ctypes.c_char_p, _c_sz]),
    "ema_file_close": (None, [_c_vp]),
    "ema_file_count": (_c_sz, [_c_vp]),
    "ema_file_tensor_at": (_c_int, [_c_vp, _c_sz, ctypes.POINTER(FileTensor)]),
    "ema_file_find": (_c_int, [_c_vp, _c_str, ctypes.POINTER(FileTensor)]),
    "ema_file_metadata_count": (_c_sz, [_c_vp]),
    "ema_file_metadata_at": (_c_int, [_c_vp, _c_sz, ctypes.POINTER(_c_str), ctypes.POINTER(_c_str)]),
    "ema_file_metadata": (_c_str, [_c_vp, _c_str]),
    "ema_file_read": (_c_int, [_c_vp, _c_str, ctypes.c_uint64, _c_vp, _c_sz]),
    "ema_file_last_error": (_c_str, [_c_vp]),
    "ema_file_write": (
        _c_int,
        [_c_str, ctypes.POINTER(FileEntry), _c_sz, ctypes.POINTER(_c_str), _c_sz, ctypes.c_char_p, _c_sz],
    ),
    "ema_extract_averages": (_c_int, [_c_str, _c_str, _c_str, ctypes.c_char_p, _c_sz]),
    # post-hoc
    "ema_power_sigma_rel": (_c_int, [_c_dbl, ctypes.POINTER(_c_dbl)]),
    "ema_power_gamma": (_c_int, [_c_dbl, ctypes.POINTER(_c_dbl)]),
    "ema_power_decay": (_c_int, [_c_dbl, ctypes.c_int64, ctypes.c_int64, ctypes.POINTER(_c_dbl)]),
    "ema_power_inner": (_c_int, [_c_dbl, _c_dbl, _c_dbl, _c_dbl, ctypes.POINTER(_c_dbl)]),
    "ema_posthoc_solve": (
        _c_int,
        [_c_sz, ctypes.POINTER(_c_dbl), ctypes.POINTER(_c_dbl), _c_dbl, _c_dbl, _c_dbl, ctypes.c_uint,
         ctypes.POINTER(_c_dbl), ctypes.POINTER(PosthocInfo), ctypes.c_char_p, _c_sz],
    ),
    # time series
    "ema_ewm_opts_init": (None, [ctypes.POINTER(EwmOpts)]),
    "ema_ewm_mean": (
        _c_int,
        [ctypes.POINTER(EwmOpts), ctypes.POINTER(_c_dbl), _c_sz, ctypes.POINTER(_c_dbl),
         ctypes.POINTER(_c_dbl), ctypes.c_char_p, _c_sz],
    ),
}


def _needs_sanitizer_runtime(path):
    """True when the shared object at path was linked against a sanitizer
    runtime (its dynamic string table names libasan/libubsan/libtsan)."""
    try:
        with open(path, "rb") as f:
            blob = f.read()
    except OSError:
        return True
    return any(s in blob for s in (b"libasan.so", b"libubsan.so", b"libtsan.so"))


def _candidates():
    env = os.environ.get("EMA_LIBRARY")
    if env:
        return [("EMA_LIBRARY", env)]
    found = []
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    dirs = []
    if os.path.isdir(os.path.join(root, "build")):
        dirs.append(os.path.join(root, "build"))
    try:
        names = sorted(os.listdir(root))
    except OSError:
        names = []
    dirs += [os.path.join(root, n) for n in names if n.startswith("build-")]
    for d in dirs:
        p = os.path.join(d, "libema.so")
        if os.path.isfile(p) and not _needs_sanitizer_runtime(p):
            found.append(("build tree", p))
    sysname = ctypes.util.find_library("ema")
    if sysname:
        found.append(("system", sysname))
    return found


def _load():
    cands = _candidates()
    if not cands:
        raise ImportError(
            "ema: libema was not found: set EMA_LIBRARY to the path of libema.so, build the "
            "library in <repo>/build (cmake -S . -B build && cmake --build build), or install it "
            "where the dynamic linker finds it")
    how, path = cands[0]
    try:
        lib = ctypes.CDLL(path)
    except OSError as e:
        raise ImportError(f"ema: cannot load libema from {path} ({how}): {e}") from e
    missing = []
    for name, (res, args) in _PROTOTYPES.items():
        try:
            fn = getattr(lib, name)
        except AttributeError:
            missing.append(name)
            continue
        fn.restype = res
        fn.argtypes = args
    if missing:
        raise ImportError(
            f"ema: the library at {path} lacks {', '.join(missing[:5])}"
            f"{' ...' if len(missing) > 5 else ''}: it is older than this binding needs "
            f"(0.1.0 or newer with major version {EXPECTED_MAJOR})")
    v = lib.ema_version_number()
    if v // 10000 != EXPECTED_MAJOR or v < MIN_VERSION:
        raise ImportError(
            f"ema: the library at {path} is version {lib.ema_version_string().decode()}; this "
            f"binding needs major version {EXPECTED_MAJOR}, at least "
            f"{MIN_VERSION // 10000}.{MIN_VERSION // 100 % 100}.{MIN_VERSION % 100}")
    return lib, path


lib, path = _load()
version_number = lib.ema_version_number()
version_string = lib.ema_version_string().decode()


def status_string(status):
    return lib.ema_status_string(int(status)).decode()


def raise_for(status, message):
    """Raise the exception of a non-zero status with message (falls back to
    the status string when the message is empty)."""
    if not message:
        message = status_string(status)
    raise _errors.error_for_status(status, message)


class Handle:
    """Owns one ema_ctx: created here, freed when the last reference goes
    (views of averages and the front-end objects hold references). A lock
    serialises calls: a context is used by one thread at a time."""

    __slots__ = ("ptr", "lock", "keep", "__weakref__")

    def __init__(self, decay):
        out = _c_ctx()
        st = lib.ema_create(ctypes.byref(out), float(decay))
        if st != 0:
            # there is no context to hold a message yet
            if st == _errors.EMA_E_INVALID_ARG:
                raise _errors.InvalidArgumentError(
                    f"decay must be a number in [0, 1], got {decay!r}", st)
            raise_for(st, "")
        self.ptr = out
        self.lock = threading.RLock()
        self.keep = []  # every array whose memory the context borrows

    def check(self, status):
        if status != 0:
            raise_for(status, lib.ema_last_error(self.ptr).decode("utf-8", "replace"))

    def close(self):
        ptr, self.ptr = getattr(self, "ptr", None), None
        if ptr:
            # never leave a model holding the averages behind our back
            if lib.ema_is_swapped(ptr):
                lib.ema_swap(ptr)
            lib.ema_free(ptr)
        self.keep = []

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown
            pass


class _ClosedHandle:
    """Stands for a context after close(): every use says so."""

    lock = threading.RLock()
    keep = ()

    @property
    def ptr(self):
        raise _errors.StateError("this EMA was closed; create a new one")

    def check(self, status):  # pragma: no cover - ptr raises first
        raise _errors.StateError("this EMA was closed; create a new one")

    def close(self):
        pass


CLOSED = _ClosedHandle()


def errbuf():
    return ctypes.create_string_buffer(ERRCAP)


def errtext(buf):
    return buf.value.decode("utf-8", "replace")
