"""The EMA of a model whose averages do not live over its own memory.

OffloadEMA (EMA(model, ..., device="cpu")): the averages in host memory,
kept by libema, for a model anywhere (a CUDA model, or a CPU one through
the same path). Per update, after optimizer.step():
  1. the parameters are copied into libema's staging buffers (for a CUDA
     model: pinned host memory handed to libema through its staging
     allocator, filled by non-blocking device-to-host copies on a side
     stream that starts after the work queued so far on the current
     stream; the current stream then waits for the copies (on the device,
     not the host), so the next optimizer step cannot change a parameter
     before it was copied);
  2. libema's asynchronous update from caller-filled staging starts
     (ema_apply_async_staged / ema_update_async_staged); its ready callback,
     on libema's update thread, waits for the copies' event;
  3. update() returns: the averaging runs on libema's threads while the
     trainer goes on.
ema.wait() waits; every call that reads or changes the averages (the next
update, evaluation, state_dict, save, load, swaps) waits first. The ctx's
"model tensors" are host mirrors of the parameters, refreshed from the
model before a save or a swap; swapping the averages into a CUDA model
copies them host-to-device. Bit for bit the synchronous update's results
(the library's guarantee; tested on CPU tensors here).

DeviceEMA (EMA(cuda_model, ...) without device=, or with the model's
device): the averages on the model's device, updated by torch._foreach ops
with libema's formula order, s - (s - v) * (1 - d); not bit-identical to
libema's kernels (nor across devices): within float rounding.

Not public: see ema.torch.
"""
import contextlib
import ctypes
from itertools import chain

import torch

from . import _arrays, _lib
from . import _torch_plan as _plan
from .errors import InvalidArgumentError, MismatchError, StateError, UnsupportedError
from .torch import _OFFLOAD, _POLICY, EMA, canonical_name


def _model_device(model):
    for t in chain(model.parameters(), model.buffers()):
        return t.device
    return torch.device("cpu")


def _device(device):
    try:
        return torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise InvalidArgumentError(f"device must be a torch device or its name ('cpu', 'cuda', 'cuda:1'), "
                                   f"got {device!r}") from None


def pick(model, device):
    """"plain" (the averages over the model's own host memory), "offload"
    (host averages behind staging) or "device" (averages on the device)."""
    if not isinstance(model, torch.nn.Module):
        return "plain"  # EMA.__init__ says what is wrong
    md = _model_device(model)
    if md.type == "meta":
        return "plain"  # no memory to average: EMA.register() says so
    if device is None:
        return "plain" if md.type == "cpu" else "device"
    d = _device(device)
    if d.type == "cpu":
        return "offload"
    if d.type != md.type or (d.index is not None and md.index is not None and d.index != md.index):
        raise InvalidArgumentError(f"device={device!r}: the model is on {md}; the averages live in host "
                                   f"memory (device='cpu') or on the model's own device")
    return "device"


def _wait_then(name, pull=False, push=False):
    """EMA.name, after waiting for the update in flight; pull: the host
    mirrors refreshed from the model first; push: the mirrors copied into
    the model after (the call changed them)."""
    base = getattr(EMA, name)

    def call(self, *args, **kwargs):
        self.wait()
        if pull:
            self._pull()
        try:
            return base(self, *args, **kwargs)
        finally:
            if push:
                self._push()
    call.__name__ = name
    call.__doc__ = base.__doc__
    return call


class OffloadEMA(EMA):
    """EMA(model, ..., device="cpu"): the averages in host memory, updated
    asynchronously from staging buffers (see the module's text). Every
    keyword of EMA; on_replaced must be "error" (reregister() is refused:
    create a new EMA and load_state_dict())."""

    def __init__(self, model, decay=None, *, device="cpu", **kwargs):
        if _device(device).type != "cpu":
            raise InvalidArgumentError(f"OffloadEMA keeps the averages in host memory: device='cpu', got {device!r}")
        if kwargs.get("on_replaced", "error") != "error":
            raise UnsupportedError("on_replaced='reregister' is not available with device='cpu'")
        if not _lib.has("ema_update_async_staged"):
            raise UnsupportedError("device='cpu' needs a libema with asynchronous updates (ema_update_async_staged)")
        self._pending = False
        self._mirrors = {}
        self._staging_views = None
        self._pinned = {}
        self._cuda = None
        self._event = None
        self._side = None
        super().__init__(model, decay, device=device, **kwargs)
        self.device = torch.device("cpu")
        self._ready_c = _lib.READY_FN(self._ready)
        self._alloc_c = _lib.STAGING_ALLOC_FN(self._alloc)
        self._free_c = _lib.STAGING_FREE_FN(self._release)

    # ------------------------------------------------------------ registering
    def _register_into(self, ctx):
        skipped = []
        slots = _plan.plan(self.model, self.buffers, self._ignore, skipped, any_device=True)
        if not any(s.averaged for s in slots):
            raise InvalidArgumentError(f"nothing to average: {type(self.model).__name__} has no floating "
                                       f"parameter with requires_grad that is not ignored")
        cuda = {s.tensor.device for s in slots if s.tensor.device.type == "cuda"}
        if len(cuda) > 1:
            raise InvalidArgumentError(f"the model spans several devices ({sorted(map(str, cuda))}): one EMA per device")
        self._cuda = next(iter(cuda)) if cuda else None
        with ctx.h.lock:   # staging from torch's allocator (pinned for a CUDA model)
            ctx.h.check(_lib.lib.ema_set_staging_allocator(
                ctx.h.ptr, ctypes.cast(self._alloc_c, ctypes.c_void_p), ctypes.cast(self._free_c, ctypes.c_void_p),
                None))
        mirrors = {}
        for s in slots:
            src = _plan.memory_view(s.tensor.detach(), s.perm)
            h = torch.empty(tuple(src.shape), dtype=src.dtype, pin_memory=self._cuda is not None)
            h.copy_(src)
            mirrors[s.name] = h
            ctx.track(s.name, h, policy=_POLICY[s.policy])
        self._mirrors = mirrors
        self._staging_views = None
        return slots, skipped

    def reregister(self):
        if not self._registered:
            return self.register()
        raise UnsupportedError("reregister() of an EMA with device='cpu': create a new EMA for the model as it "
                               "is now and load_state_dict() this one's state_dict() into it")

    # --------------------------------------------------------------- staging
    def _alloc(self, user, nbytes):
        try:
            t = torch.empty(max(1, int(nbytes)), dtype=torch.uint8, pin_memory=self._cuda is not None)
        except Exception:  # reported by the library as EMA_E_NOMEM
            return None
        self._pinned[t.data_ptr()] = t
        return t.data_ptr()

    def _release(self, user, block):
        pinned = getattr(self, "_pinned", None)   # None while the interpreter shuts down
        if pinned is not None:
            pinned.pop(block, None)

    def _staging(self):
        """[(staging view, the parameter in memory order)] of every averaged tensor."""
        if self._staging_views is None:
            ctx, out = self._ctx, []
            codes = _arrays._torch_map(torch)
            for s in self._slots:
                if not s.averaged:
                    continue
                ptr = ctypes.c_void_p()
                with ctx.h.lock:
                    ctx.h.check(_lib.lib.ema_staging(ctx.h.ptr, ctx.entry(s.name).bname, ctypes.byref(ptr)))
                h = self._mirrors[s.name]
                view = _arrays.torch_view(ptr.value, codes[h.dtype], tuple(h.shape), ctx.h)
                out.append((view, _plan.memory_view(s.tensor.detach(), s.perm)))
            self._staging_views = out
        return self._staging_views

    def _ready(self, user):
        """On libema's update thread: the staging holds the values once the
        copies' event completed."""
        try:
            if self._event is not None:
                self._event.synchronize()
            return 0
        except BaseException:
            return 1

    # ---------------------------------------------------------------- updates
    def update(self, model=None, step=None, *, num_updates=None):
        self.wait()
        return EMA.update(self, model, step, num_updates=num_updates)

    update.__doc__ = EMA.update.__doc__

    def _run_update(self, step):
        views = self._staging()
        if self._cuda is not None:
            cur = torch.cuda.current_stream(self._cuda)
            if self._side is None:
                self._side = torch.cuda.Stream(self._cuda)
            side = self._side
            side.wait_stream(cur)            # after the optimizer step queued so far
            with torch.no_grad(), torch.cuda.stream(side):
                for dst, src in views:
                    dst.copy_(src, non_blocking=True)
                ev = torch.cuda.Event()
                ev.record(side)
            cur.wait_event(ev)               # later in-place changes wait for the copies (on the device)
            self._event = ev
            ready = ctypes.cast(self._ready_c, ctypes.c_void_p)
        else:
            with torch.no_grad():
                for dst, src in views:
                    dst.copy_(src)
            self._event = None
            ready = None
        ctx = self._ctx
        if self._mode == "tf" and self._warmup == "tf":
            ctx.num_updates = step
        with ctx.h.lock:
            if self._mode == "tf":
                st = _lib.lib.ema_apply_async_staged(ctx.h.ptr, ready, None)
            else:
                st = _lib.lib.ema_update_async_staged(ctx.h.ptr, int(step), ready, None)
        ctx.h.check(st)
        self._pending = True

    def wait(self):
        """Wait for the asynchronous update in flight (if any) and raise its
        failure, if it failed (it then applied nothing)."""
        if not self._pending:
            return
        self._pending = False
        ctx = self._ctx
        with ctx.h.lock:
            st = _lib.lib.ema_wait(ctx.h.ptr)
        ctx.h.check(st)

    # ---------------------------------------------------------- host mirrors
    def _pull(self):
        """The mirrors (the library's model tensors) get the model's values."""
        with torch.no_grad():
            for s in self._slots:
                self._mirrors[s.name].copy_(_plan.memory_view(s.tensor.detach(), s.perm))

    def _push(self):
        """The model gets the mirrors' values (after a swap, a load)."""
        with torch.no_grad():
            for s in self._slots:
                _plan.memory_view(s.tensor.detach(), s.perm).copy_(self._mirrors[s.name])

    def apply_shadow(self, member=None):
        self.wait()
        self._pull()
        EMA.apply_shadow(self, member)
        self._push()
        self._versions = list(map(_plan.versions, self._swapped_tensors))

    apply_shadow.__doc__ = EMA.apply_shadow.__doc__

    def restore(self, parameters=None, *, force=False):
        self.wait()
        EMA.restore(self, parameters, force=force)
        self._push()

    restore.__doc__ = EMA.restore.__doc__

    def copy_to(self, target=None, **kwargs):
        self.wait()
        out = EMA.copy_to(self, target, **kwargs)
        if target is None or target is self.model:
            self._push()
        return out

    copy_to.__doc__ = EMA.copy_to.__doc__

    @contextlib.contextmanager
    def average_parameters(self, member=None):
        self.apply_shadow(member)
        try:
            yield self.model
        finally:
            self.restore()

    state_dict = _wait_then("state_dict")
    load_state_dict = _wait_then("load_state_dict")
    average_view = _wait_then("average_view")
    averaged_state_dict = _wait_then("averaged_state_dict")
    save = _wait_then("save", pull=True)
    store = _wait_then("store", pull=True)
    load = _wait_then("load", push=True)
    load_averages_into_model = _wait_then("load_averages_into_model", push=True)

    def close(self):
        try:
            self.wait()
        finally:
            EMA.close(self)


_OFFLOAD[0] = (OffloadEMA,)


class DeviceEMA:
    """The averages on the model's device (CUDA), updated by torch._foreach
    ops in libema's order, s - (s - v) * (1 - d), with d rounded to the
    shadow's dtype as libema does for float32. Not bit-identical to libema
    (nor from one device to another). A subset of EMA: register, update
    (decay, warmup None or "tf", update_every), wait, average(s), names,
    shadow, apply_shadow / restore / average_parameters, state_dict /
    load_state_dict. Floating buffers are averaged (buffers="average") or
    follow the model ("copy"); integer buffers follow the model."""

    FORMAT = "libema.torch.DeviceEMA/1"

    def __init__(self, model, decay=0.999, *, device=None, warmup=None, update_every=1, buffers="average",
                 ignore=(), **others):
        if not isinstance(model, torch.nn.Module):
            raise InvalidArgumentError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        unsupported = {k: v for k, v in others.items() if v not in (None, False, 0, 0.0, 1.0, "error", True, ())}
        if unsupported:
            raise UnsupportedError(f"averages on the device support decay, warmup None/'tf', update_every and "
                                   f"buffers; not {sorted(unsupported)}: use device='cpu' for libema's schedules")
        if warmup not in (None, "tf"):
            raise UnsupportedError(f"warmup={warmup!r} on the device: use device='cpu' (libema's schedules)")
        if buffers not in ("average", "copy"):
            raise InvalidArgumentError(f"buffers must be 'average' or 'copy' on the device, got {buffers!r}")
        self.decay = _plan._number(decay, "decay", 0.0, 1.0)
        self.model, self.warmup, self.buffers = model, warmup, buffers
        self.update_every = _plan._int(update_every, "update_every", 1)
        self.device = _model_device(model) if device is None else _device(device)
        self._ignore = _plan.compile_ignore(ignore)
        self.step = 0
        self._registered = self._applied = False
        self._backup = None

    def register(self):
        if self._registered:
            raise StateError("register() was already called")
        skipped = []
        slots = [s for s in _plan.plan(self.model, self.buffers, self._ignore, skipped, any_device=True)
                 if s.averaged]
        if not slots:
            raise InvalidArgumentError("nothing to average")
        self._slots = slots
        self._params = [s.tensor.detach() for s in slots]
        self._ptrs = [p.data_ptr() for p in self._params]
        self._shadows = [p.clone() for p in self._params]
        self.skipped = skipped
        self._registered = True
        return self

    def _need(self, what):
        if not self._registered:
            raise StateError(f"{what} needs register() first")

    def names(self, averaged=None):
        return [s.name for s in self._slots] if averaged in (None, True) else []

    def wait(self):
        """Nothing to wait for on the host: the updates are queued on the
        model's stream, in order with the trainer's work."""
        return None

    def update(self, model=None, step=None):
        self._need("update()")
        if self._applied:
            raise StateError("update() while the averages are applied: call restore() first")
        if isinstance(model, int) and not isinstance(model, bool) and step is None:
            step, model = model, None
        if model is not None and model is not self.model:
            raise InvalidArgumentError("update(model): this EMA averages the model it was created with")
        if [p.data_ptr() for p in (s.tensor for s in self._slots)] != self._ptrs:
            raise StateError("a registered tensor's storage was replaced since register(): create a new EMA")
        step = self.step + 1 if step is None else _plan._int(step, "step", 1)
        if step <= self.step:
            raise InvalidArgumentError(f"step must increase: got {step} after {self.step}")
        self.step = step
        if step % self.update_every:
            return
        d = self.decay if self.warmup is None else min(self.decay, (1.0 + step) / (10.0 + step))
        d = d ** self.update_every
        with torch.no_grad():
            diff = torch._foreach_sub(self._shadows, self._params)
            torch._foreach_mul_(diff, float(torch.tensor(1.0, dtype=torch.float32) - torch.tensor(d, dtype=torch.float32)))
            torch._foreach_sub_(self._shadows, diff)

    def _index(self, name):
        name = canonical_name(name)
        for i, s in enumerate(self._slots):
            if name in s.aliases or name == s.name:
                return i
        raise InvalidArgumentError(f"no averaged tensor called {name!r}")

    def average_view(self, name):
        self._need("average_view()")
        return self._shadows[self._index(name)]

    def average(self, name):
        return self.average_view(name).clone()

    @property
    def shadow(self):
        self._need("shadow")
        return {s.name: t.clone() for s, t in zip(self._slots, self._shadows)}

    def apply_shadow(self):
        self._need("apply_shadow()")
        if self._applied:
            raise StateError("apply_shadow() twice")
        self._backup = [p.clone() for p in self._params]
        with torch.no_grad():
            for p, s in zip(self._params, self._shadows):
                p.copy_(s)
        self._applied = True

    def restore(self):
        if not self._applied:
            raise StateError("restore() without apply_shadow()")
        with torch.no_grad():
            for p, b in zip(self._params, self._backup):
                p.copy_(b)
        self._backup, self._applied = None, False

    @contextlib.contextmanager
    def average_parameters(self):
        self.apply_shadow()
        try:
            yield self.model
        finally:
            self.restore()

    def state_dict(self):
        self._need("state_dict()")
        return {"format": self.FORMAT, "decay": self.decay, "step": self.step,
                "tensors": {s.name: t.clone() for s, t in zip(self._slots, self._shadows)}}

    def load_state_dict(self, state):
        self._need("load_state_dict()")
        if not isinstance(state, dict) or state.get("format") != self.FORMAT:
            raise InvalidArgumentError(f"not a DeviceEMA state dict (format {self.FORMAT!r})")
        tensors = state["tensors"]
        names = [s.name for s in self._slots]
        if sorted(tensors) != sorted(names):
            raise MismatchError(f"the state holds {sorted(set(tensors) ^ set(names))[:5]} that do not match")
        for s, t in zip(self._slots, self._shadows):
            if tuple(tensors[s.name].shape) != tuple(t.shape):
                raise MismatchError(f"{s.name!r} has shape {tuple(tensors[s.name].shape)}, not {tuple(t.shape)}")
        with torch.no_grad():
            for s, t in zip(self._slots, self._shadows):
                t.copy_(tensors[s.name])
        self.step = int(state["step"])

    def __repr__(self):
        return f"DeviceEMA(decay={self.decay!r}, device={self.device}, step={self.step})"
