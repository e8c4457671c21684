"""Loading libema with ctypes: discovery, version check, prototypes.

Discovery order (the first that exists wins):
  1. the environment variable EMA_LIBRARY, when set: a path to libema.so (or
     a name ctypes can load, e.g. "libema.so.0"); an explicit override, used
     by the test suite to load a sanitizer build;
  2. the packaged copy: libema.so inside this package (pip install puts it
     there: see setup.py);
  3. only when the package is python/ema of a source checkout (for
     development): <repo>/build/libema.so, then <repo>/build-*/libema.so in
     name order, skipping libraries built with a sanitizer (they cannot be
     loaded into a Python that was not started with the sanitizer runtime);
  4. the system: ctypes.util.find_library("ema") (ldconfig, LD_LIBRARY_PATH).

The library's major version must be EXPECTED_MAJOR; its version number must
be at least MIN_VERSION (the first that has every function bound below).
"""
import ctypes
import ctypes.util
import os
import threading

from . import errors as _errors

EXPECTED_MAJOR = 0
MIN_VERSION = 200  # 0.2.0: the bank, policy and buffer names

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


class Schedule(ctypes.Structure):
    """struct ema_schedule (ema/core.h)."""
    _fields_ = [
        ("kind", ctypes.c_int),
        ("decay", ctypes.c_double),
        ("min_decay", ctypes.c_double),
        ("inv_gamma", ctypes.c_double),
        ("power", ctypes.c_double),
        ("gamma", ctypes.c_double),
        ("sigma_rel", ctypes.c_double),
        ("halflife", ctypes.c_double),
        ("update_after_step", ctypes.c_int64),
    ]


# ema_policy values (frozen)
POLICY_AVERAGE, POLICY_COPY, POLICY_KEEP = 0, 1, 2

# ema_schedule_kind values (frozen)
SCHEDULE_CONSTANT, SCHEDULE_INV_POWER, SCHEDULE_POWER, SCHEDULE_HALFLIFE = 0, 1, 2, 3


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
    "ema_track_policy": (_c_int, [_c_ctx, _c_str, _c_vp, _c_int, _c_int, _c_i64p, _c_int]),
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
    "ema_decay": (_c_dbl, [_c_ctx]),
    "ema_num_updates": (ctypes.c_int64, [_c_ctx]),
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
    # schedules, step-driven updates, banks
    "ema_schedule_init": (None, [ctypes.POINTER(Schedule), _c_int]),
    "ema_schedule_decay": (_c_int, [ctypes.POINTER(Schedule), ctypes.c_int64, ctypes.c_int64,
                                    ctypes.POINTER(_c_dbl)]),
    "ema_set_schedule": (_c_int, [_c_ctx, ctypes.POINTER(Schedule)]),
    "ema_bank_add": (_c_int, [_c_ctx, _c_str, ctypes.POINTER(Schedule), ctypes.POINTER(_c_sz)]),
    "ema_bank_size": (_c_sz, [_c_ctx]),
    "ema_bank_name": (_c_str, [_c_ctx, _c_sz]),
    "ema_bank_average": (_c_vp, [_c_ctx, _c_str, _c_sz, ctypes.POINTER(_c_int)]),
    "ema_bank_set_active": (_c_int, [_c_ctx, _c_sz]),
    "ema_update": (_c_int, [_c_ctx, ctypes.c_int64]),
    "ema_last_step": (ctypes.c_int64, [_c_ctx]),
    "ema_snapshot": (_c_int, [_c_ctx, _c_sz, _c_str]),
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


# Functions bound when the library has them (newer than MIN_VERSION); the
# front-ends test `has(name)` before using them.
_OPTIONAL = {
    # name: (restype, argtypes)
    "ema_save_buffer": (_c_int, [_c_ctx, ctypes.POINTER(_c_vp), ctypes.POINTER(_c_sz)]),
    "ema_buffer_free": (None, [_c_vp]),
    "ema_load_buffer": (_c_int, [_c_ctx, _c_vp, _c_sz]),
    "ema_save_writer": (_c_int, [_c_ctx, _c_vp, _c_vp]),
    "ema_save_state_buffer": (_c_int, [_c_ctx, ctypes.POINTER(_c_vp), ctypes.POINTER(_c_sz)]),
    "ema_save_state_writer": (_c_int, [_c_ctx, ctypes.c_uint, _c_vp, _c_vp]),
    "ema_load_state_buffer": (_c_int, [_c_ctx, _c_vp, _c_sz]),
    # parts: an array of ema_bytes {const void *data; size_t len}, passed as 2n size_t
    "ema_load_state_parts": (_c_int, [_c_ctx, _c_vp, _c_sz, _c_vp, _c_sz]),
    # asynchronous updates (ema/core.h); callbacks: READY_FN, STAGING_*_FN
    "ema_apply_async": (_c_int, [_c_ctx]),
    "ema_update_async": (_c_int, [_c_ctx, ctypes.c_int64]),
    "ema_wait": (_c_int, [_c_ctx]),
    "ema_apply_async_staged": (_c_int, [_c_ctx, _c_vp, _c_vp]),
    "ema_update_async_staged": (_c_int, [_c_ctx, ctypes.c_int64, _c_vp, _c_vp]),
    "ema_staging": (_c_int, [_c_ctx, _c_str, ctypes.POINTER(_c_vp)]),
    "ema_staging_at": (_c_int, [_c_ctx, _c_sz, ctypes.POINTER(_c_vp)]),
    "ema_set_staging_allocator": (_c_int, [_c_ctx, _c_vp, _c_vp, _c_vp]),
}

# C callback types of the asynchronous API: pass ctypes.cast(fn, c_void_p)
# (keep a reference to fn for as long as the context may call it).
# ema_ready_fn: int (*)(void *user), called on the library's update thread.
READY_FN = ctypes.CFUNCTYPE(_c_int, _c_vp)
# ema_staging_alloc_fn: void *(*)(void *user, size_t bytes)
STAGING_ALLOC_FN = ctypes.CFUNCTYPE(_c_vp, _c_vp, _c_sz)
# ema_staging_free_fn: void (*)(void *user, void *block)
STAGING_FREE_FN = ctypes.CFUNCTYPE(None, _c_vp, _c_vp)


def _needs_sanitizer_runtime(path):
    """True when the shared object at path was linked against a sanitizer
    runtime (its dynamic string table names libasan/libubsan/libtsan)."""
    try:
        with open(path, "rb") as f:
            blob = f.read()
    except OSError:
        return True
    return any(s in blob for s in (b"libasan.so", b"libubsan.so", b"libtsan.so"))


def _checkout_root(pkg_dir):
    """The repository root when pkg_dir is <root>/python/ema of a libema
    source checkout, else None (an installed copy never looks beside
    site-packages)."""
    parent = os.path.dirname(pkg_dir)
    if os.path.basename(parent) != "python":
        return None
    root = os.path.dirname(parent)
    if os.path.isfile(os.path.join(root, "CMakeLists.txt")) and os.path.isfile(
            os.path.join(root, "include", "ema", "core.h")):
        return root
    return None


def _candidates():
    """[(how, path)] in search order, and the places looked at (for the error)."""
    env = os.environ.get("EMA_LIBRARY")
    if env:
        return [("EMA_LIBRARY", env)], [f"EMA_LIBRARY={env}"]
    pkg_dir = os.path.dirname(os.path.abspath(__file__))
    found, looked = [], []
    packaged = os.path.join(pkg_dir, "libema.so")
    looked.append(packaged)
    if os.path.isfile(packaged):
        found.append(("packaged copy", packaged))
    root = _checkout_root(pkg_dir)
    if root is not None:
        try:
            names = sorted(n for n in os.listdir(root) if n == "build" or n.startswith("build-"))
        except OSError:
            names = []
        if "build" in names:
            names.remove("build")
            names.insert(0, "build")
        for n in names:
            p = os.path.join(root, n, "libema.so")
            looked.append(p)
            if os.path.isfile(p) and not _needs_sanitizer_runtime(p):
                found.append(("build tree", p))
    looked.append('ctypes.util.find_library("ema")')
    sysname = ctypes.util.find_library("ema")
    if sysname:
        found.append(("system", sysname))
    return found, looked


def _load():
    cands, looked = _candidates()
    if not cands:
        raise ImportError(
            "ema: the shared library libema.so was not found (looked at: " + "; ".join(looked) +
            "). Install the package with pip (pip install --no-build-isolation <repo>), which "
            "builds and ships the library; or, in a source checkout, build it in <repo>/build "
            "(cmake -S . -B build && cmake --build build); or set EMA_LIBRARY to its path")
    how, path = cands[0]
    try:
        lib = ctypes.CDLL(path)
    except OSError as e:
        raise ImportError(f"ema: cannot load libema from {path} ({how}): {e}") from e
    missing = []
    for name, (res, args) in list(_PROTOTYPES.items()) + list(_OPTIONAL.items()):
        try:
            fn = getattr(lib, name)
        except AttributeError:
            if name in _PROTOTYPES:
                missing.append(name)
            continue
        fn.restype = res
        fn.argtypes = args
    if missing:
        raise ImportError(
            f"ema: the library at {path} lacks {', '.join(missing[:5])}"
            f"{' ...' if len(missing) > 5 else ''}: it is older than this binding needs "
            f"(0.2.0 or newer with major version {EXPECTED_MAJOR})")
    v = lib.ema_version_number()
    if v // 10000 != EXPECTED_MAJOR or v < MIN_VERSION:
        raise ImportError(
            f"ema: the library at {path} is version {lib.ema_version_string().decode()}; this "
            f"binding needs major version {EXPECTED_MAJOR}, at least "
            f"{MIN_VERSION // 10000}.{MIN_VERSION // 100 % 100}.{MIN_VERSION % 100}")
    return lib, path


lib, path = _load()


def has(name):
    """True when the loaded library provides the function `name`."""
    try:
        getattr(lib, name)
        return True
    except AttributeError:
        return False
version_number = lib.ema_version_number()
version_string = lib.ema_version_string().decode()


def status_string(status):
    return lib.ema_status_string(int(status)).decode()


_C_CALL = __import__("re").compile(r"\bema_[a-z0-9_]+(\([^()]*\))?")


def python_terms(message, terms):
    """message with the library's function names replaced by the front-end's
    names (terms: {"ema_swap": "restore()", ...}); a name not in terms
    becomes a neutral phrase, and a leading "ema_xxx: " is dropped."""
    if not terms or "ema_" not in message:
        return message
    m = __import__("re").match(r"ema_[a-z0-9_]+: ", message)
    if m:
        message = message[m.end():]

    def sub(mt):
        py = terms.get(mt.group(0).split("(")[0])
        return py if py is not None else "the library call"
    return _C_CALL.sub(sub, message)


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

    __slots__ = ("ptr", "lock", "keep", "terms", "__weakref__")

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
        self.terms = None  # the front-end's names for the library's calls (python_terms)

    def check(self, status):
        if status != 0:
            msg = lib.ema_last_error(self.ptr).decode("utf-8", "replace")
            raise_for(status, python_terms(msg, self.terms))

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
