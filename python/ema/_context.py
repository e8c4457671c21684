"""The context both front-ends are built on: one ema_ctx, the arrays it
borrows, and the calls, with every failure turned into an exception.

Not public: use ema.ExponentialMovingAverage or ema.torch.EMA.
"""
import ctypes
import operator
import os

from . import _arrays, _lib
from .errors import (AlreadyExistsError, DTypeError, InvalidArgumentError, MismatchError, NotFoundError,
                     StorageChangedError)

_lib_ = _lib.lib


_tensor_ptr = operator.methodcaller("data_ptr")   # C-level: no Python frame per tensor


def encode_name(name, what="name"):
    if not isinstance(name, str):
        raise InvalidArgumentError(f"{what} must be a str, got {type(name).__name__}")
    b = name.encode("utf-8")
    if not b or b"\0" in b:
        raise InvalidArgumentError(f"{what} {name!r} must be non-empty and contain no NUL character")
    return b


def fspath(path):
    p = os.fsencode(path)
    if b"\0" in p:
        raise InvalidArgumentError(f"path {path!r} contains a NUL character")
    return p


class Entry:
    __slots__ = ("name", "bname", "desc", "averaged", "shadow_dtype")

    def __init__(self, name, bname, desc, averaged, shadow_dtype):
        self.name = name
        self.bname = bname
        self.desc = desc
        self.averaged = averaged
        self.shadow_dtype = shadow_dtype


class Context:
    state_hint = "track_state"  # how the front-end registers plain state
    def __init__(self, decay, num_updates=None, zero_debias=False, name="ExponentialMovingAverage",
                 threads=None, half_shadows=False):
        self.h = _lib.Handle(self._check_decay(decay))
        self._decay = float(decay)
        self._num_updates = None
        self._zero_debias = bool(zero_debias)
        self._name = None
        self.entries = {}  # name -> Entry, registration order
        self._torch_quick = ([], [], [])  # (tensors, aliases, data_ptr at registration)
        self._torch_names = []
        self._names_cache = (None, None)
        with self.h.lock:
            self.h.check(_lib_.ema_set_zero_debias(self.h.ptr, int(bool(zero_debias))))
            self.h.check(_lib_.ema_set_half_shadows(self.h.ptr, int(bool(half_shadows))))
        self.name = name
        if num_updates is not None:
            self.num_updates = num_updates
        if threads is not None:
            self.threads = threads

    # ---------------------------------------------------------------- options
    @staticmethod
    def _check_decay(decay):
        if isinstance(decay, bool) or not isinstance(decay, (int, float)) and not hasattr(decay, "__float__"):
            raise InvalidArgumentError(f"decay must be a number in [0, 1], got {decay!r}")
        return float(decay)

    @property
    def decay(self):
        return self._decay

    @decay.setter
    def decay(self, value):
        value = self._check_decay(value)
        with self.h.lock:
            self.h.check(_lib_.ema_set_decay(self.h.ptr, value))
        self._decay = value

    @property
    def num_updates(self):
        return self._num_updates

    @num_updates.setter
    def num_updates(self, n):
        if n is None:
            v = -1
        else:
            if isinstance(n, bool) or not hasattr(n, "__index__"):
                raise InvalidArgumentError(f"num_updates must be an int >= 0 or None, got {n!r}")
            v = int(n.__index__())
            if v < 0:
                raise InvalidArgumentError(
                    f"num_updates must be >= 0 (or None to turn the warm-up off), got {v}")
        with self.h.lock:
            self.h.check(_lib_.ema_set_num_updates(self.h.ptr, v))
        self._num_updates = None if n is None else v

    @property
    def zero_debias(self):
        return self._zero_debias

    @property
    def name(self):
        return self._name

    @name.setter
    def name(self, value):
        b = encode_name(value, "name of the EMA")
        with self.h.lock:
            self.h.check(_lib_.ema_set_name(self.h.ptr, b))
        self._name = value

    @property
    def effective_decay(self):
        return float(_lib_.ema_effective_decay(self.h.ptr))

    @property
    def threads(self):
        return int(_lib_.ema_threads(self.h.ptr))

    @threads.setter
    def threads(self, n):
        if isinstance(n, bool) or not hasattr(n, "__index__"):
            raise InvalidArgumentError(f"threads must be an int (0: the library default), got {n!r}")
        with self.h.lock:
            self.h.check(_lib_.ema_set_threads(self.h.ptr, int(n)))

    @property
    def swapped(self):
        return bool(_lib_.ema_is_swapped(self.h.ptr))

    # --------------------------------------------------------------- tensors
    def track(self, name, obj, averaged=True, desc=None, policy=None):
        """Register obj under name with a policy (_lib.POLICY_*; default
        AVERAGE, or COPY with averaged=False: plain state). Returns the Entry."""
        if policy is None:
            policy = _lib.POLICY_AVERAGE if averaged else _lib.POLICY_COPY
        averaged = policy == _lib.POLICY_AVERAGE
        bname = encode_name(name, "tensor name")
        what = repr(name)
        if desc is None:
            desc = _arrays.describe(obj, what)
        if name in self.entries:
            raise AlreadyExistsError(f"{what} is already registered")
        _arrays.check_dims(desc, what)
        code = desc.dtype
        if code is None:
            if averaged:
                raise DTypeError(
                    f"{what} has dtype {_arrays.dtype_label(desc)}; only float32, float64, float16 and "
                    f"bfloat16 tensors can be averaged (integer and boolean tensors never are: carry "
                    f"int32/int64 ones as plain state)")
            raise DTypeError(
                f"{what} has dtype {_arrays.dtype_label(desc)}, which libema cannot carry as plain "
                f"state (it knows float32, float64, float16, bfloat16, int32 and int64)")
        shape = _arrays.shape_arg(desc.shape)
        with self.h.lock:
            try:
                args = (self.h.ptr, bname, ctypes.c_void_p(desc.ptr or None), code, len(desc.shape), shape)
                self.h.check(_lib_.ema_track(*args) if averaged else _lib_.ema_track_policy(*args, policy))
            except DTypeError as e:
                e.message += f" (from Python: {self.state_hint}({name!r}, array))"
                e.args = (e.message,)
                raise
            self.h.keep.append(desc.keep)
            sd = ctypes.c_int(code)
            if averaged:
                _lib_.ema_average(self.h.ptr, bname, ctypes.byref(sd))
        e = Entry(name, bname, desc, averaged, sd.value)
        self.entries[name] = e
        if desc.kind == "torch" and desc.ptr:
            self._torch_quick[0].append(desc.obj)
            self._torch_quick[1].append(desc.keep)
            self._torch_quick[2].append(desc.ptr)
            self._torch_names.append(name)
        return e

    def retarget(self, name, obj):
        """Point the registered `name` at obj, new memory of the same dtype
        and shape (ema_retarget): its averages are kept. The old memory stays
        referenced until close(), as every registered buffer does."""
        e = self.entries.get(name)
        if e is None:
            raise NotFoundError(f"{name!r} is not registered")
        desc = _arrays.describe(obj, repr(name))
        if desc.dtype != e.desc.dtype or tuple(desc.shape) != tuple(e.desc.shape):
            raise MismatchError(f"{name!r}: the new tensor has another dtype or shape; use a full "
                                f"re-registration")
        with self.h.lock:
            self.h.check(_lib_.ema_retarget(self.h.ptr, e.bname, ctypes.c_void_p(desc.ptr or None)))
            self.h.keep.append(desc.keep)
        e.desc = desc
        if name in self._torch_names:
            i = self._torch_names.index(name)
            self._torch_quick[0][i] = desc.obj
            self._torch_quick[1][i] = desc.keep
            self._torch_quick[2][i] = desc.ptr
        return e

    def entry(self, name):
        e = self.entries.get(name)
        if e is None:
            raise NotFoundError(f"no tensor called {name!r} is registered")
        return e

    def check_storage(self, names=None):
        """Refuse before the library touches memory a registered torch tensor
        no longer uses: its .data was replaced (param.data = ..., .to()), or
        its storage was reallocated in place (resize_, set_). numpy arrays
        cannot change their memory while referenced, so only tensors are
        checked. names: ignored (all are checked)."""
        objs, keeps, ptrs = self._torch_quick
        if not ptrs or (list(map(_tensor_ptr, objs)) == ptrs and list(map(_tensor_ptr, keeps)) == ptrs):
            return
        bad = [n for n, o, k, p in zip(self._torch_names, objs, keeps, ptrs)
               if _tensor_ptr(o) != p or _tensor_ptr(k) != p]
        raise StorageChangedError(
            f"{', '.join(map(repr, bad[:5]))}{' ...' if len(bad) > 5 else ''} no longer use the memory "
            f"registered with libema (the tensor's .data was replaced, or its storage reallocated); "
            f"updating it in place (t.copy_(), t.add_(), optimizer steps) is what libema sees")

    # ---------------------------------------------------------------- updates
    def apply_all(self):
        with self.h.lock:
            self.h.check(_lib_.ema_apply(self.h.ptr))

    def apply_some(self, names):
        names = tuple(names)
        key, arr = self._names_cache
        if key != names:
            arr = (ctypes.c_char_p * max(1, len(names)))(*[self.entries[n].bname for n in names])
            self._names_cache = (names, arr)
        with self.h.lock:
            self.h.check(_lib_.ema_apply_some(self.h.ptr, arr, len(names)))

    # ------------------------------------------------- schedules, banks, steps
    def set_schedule(self, sched):
        """Use sched (a _lib.Schedule) for member 0; its decay becomes the decay."""
        with self.h.lock:
            self.h.check(_lib_.ema_set_schedule(self.h.ptr, ctypes.byref(sched)))
        self._decay = float(_lib_.ema_decay(self.h.ptr))

    def bank_add(self, name, sched):
        """Add a member of the bank (before any tensor is tracked); its index."""
        b = encode_name(name, "name of the average")
        idx = ctypes.c_size_t(0)
        with self.h.lock:
            self.h.check(_lib_.ema_bank_add(self.h.ptr, b, ctypes.byref(sched), ctypes.byref(idx)))
        return idx.value

    @property
    def bank_size(self):
        return int(_lib_.ema_bank_size(self.h.ptr))

    def bank_name(self, k):
        v = _lib_.ema_bank_name(self.h.ptr, k)
        return None if v is None else v.decode("utf-8")

    def bank_set_active(self, k):
        with self.h.lock:
            self.h.check(_lib_.ema_bank_set_active(self.h.ptr, k))

    def update(self, step):
        """ema_update: one update of every member at training step `step`."""
        with self.h.lock:
            self.h.check(_lib_.ema_update(self.h.ptr, int(step)))

    @property
    def last_step(self):
        return int(_lib_.ema_last_step(self.h.ptr))

    def snapshot(self, k, path):
        with self.h.lock:
            self.h.check(_lib_.ema_snapshot(self.h.ptr, k, fspath(path)))

    def kept_ptr(self, name, k):
        """(pointer, dtype code) of a KEEP tensor's kept value (member k)."""
        e = self.entry(name)
        sd = ctypes.c_int(0)
        ptr = _lib_.ema_bank_average(self.h.ptr, e.bname, k, ctypes.byref(sd))
        if not ptr:
            raise NotFoundError(f"{name!r} has no kept value")
        return ptr, sd.value

    def bank_average_torch(self, name, k):
        e = self.entry(name)
        if not e.averaged:
            raise NotFoundError(f"{name!r} is not averaged; it has no average")
        sd = ctypes.c_int(0)
        ptr = _lib_.ema_bank_average(self.h.ptr, e.bname, k, ctypes.byref(sd))
        return _arrays.torch_view(ptr, sd.value, e.desc.shape, self.h)

    # ---------------------------------------------------------------- averages
    def average_ptr(self, name):
        e = self.entry(name)
        if not e.averaged:
            raise NotFoundError(f"{name!r} is plain state, which is never averaged; it has no average")
        sd = ctypes.c_int(0)
        ptr = _lib_.ema_average(self.h.ptr, e.bname, ctypes.byref(sd))
        return e, ptr, sd.value

    def average_numpy(self, name):
        e, ptr, code = self.average_ptr(name)
        return _arrays.numpy_view(ptr, code, e.desc.shape, self.h)

    def average_torch(self, name):
        e, ptr, code = self.average_ptr(name)
        return _arrays.torch_view(ptr, code, e.desc.shape, self.h)

    def average_view(self, name):
        e, ptr, code = self.average_ptr(name)
        return _arrays.view_like(e.desc, ptr, code, e.desc.shape, self.h)

    def average_name(self, name):
        b = encode_name(name, "tensor name")
        cap = len(b) + len(self._name.encode()) + 2
        buf = ctypes.create_string_buffer(cap)
        with self.h.lock:
            self.h.check(_lib_.ema_average_name(self.h.ptr, b, buf, cap))
        return buf.value.decode("utf-8")

    # ------------------------------------------------------------- evaluation
    def _call(self, fn):
        with self.h.lock:
            self.h.check(fn(self.h.ptr))

    def swap(self):
        self._call(_lib_.ema_swap)

    def store(self):
        self._call(_lib_.ema_store)

    def copy_to(self):
        self._call(_lib_.ema_copy_to)

    def restore(self):
        self._call(_lib_.ema_restore)

    # ------------------------------------------------------------ checkpoints
    def save(self, path):
        with self.h.lock:
            self.h.check(_lib_.ema_save(self.h.ptr, fspath(path)))

    def load(self, path):
        with self.h.lock:
            self.h.check(_lib_.ema_load(self.h.ptr, fspath(path)))
        self.after_load()

    def after_load(self, meta=None):
        """The library took decay, num_updates and name from a checkpoint:
        read them back from the library, never from the file (meta is
        ignored; the library validated the file and is what updates use)."""
        with self.h.lock:
            self._decay = float(_lib_.ema_decay(self.h.ptr))
            n = int(_lib_.ema_num_updates(self.h.ptr))
            name = _lib_.ema_bank_name(self.h.ptr, 0)
        self._num_updates = None if n < 0 else n
        if name is not None:
            self._name = name.decode("utf-8")

    def load_averages_into_model(self, path):
        with self.h.lock:
            self.h.check(_lib_.ema_load_averages_into_model(self.h.ptr, fspath(path)))

    def close(self):
        """Drop this object's hold on the library context: swapped arrays get
        their values back now; the context itself is freed when the last view
        of an average goes."""
        h = self.h
        if isinstance(h, _lib.Handle) and h.ptr:
            with h.lock:
                if _lib_.ema_is_swapped(h.ptr):
                    h.check(_lib_.ema_swap(h.ptr))
        self.h = _lib.CLOSED
        self.entries = {}
        self._torch_quick = ([], [], [])
        self._torch_names = []
