"""ema.torch.EMA: the usual PyTorch EMA class (register / update /
apply_shadow / restore), with the averages kept by libema in place, over the
parameters' own memory: no copy of the model, no per-parameter Python loop in
the update.

    from ema.torch import EMA
    ema = EMA(model, 0.999)
    ema.register()
    for batch in data:
        loss(model, batch).backward(); optimizer.step(); optimizer.zero_grad()
        ema.update()
    with ema.average_parameters():      # the model holds the averages here
        evaluate(model)
    ema.save("ema.safetensors")

What is averaged, what is carried:
  - parameters with requires_grad (floating): averaged;
  - floating buffers (BatchNorm running_mean / running_var): copied, not
    averaged (buffers="copy", the default). They are registered as plain
    state: the model keeps using its own current statistics while the
    averages are swapped in (what timm's ModelEmaV2 gets by copying buffers
    at every update), they are saved under their own names, and
    load_averages_into_model() puts them back. buffers="average" averages
    them like parameters (AveragedModel(use_buffers=True)); buffers="ignore"
    leaves them out;
  - integer buffers (num_batches_tracked), int32/int64: plain state;
  - frozen parameters (requires_grad=False): plain state;
  - non-persistent buffers and dtypes libema cannot carry (bool, uint8, ...):
    left out, listed in EMA.skipped.

Names are canonical: every "_orig_mod." (torch.compile) and leading
"module." (DataParallel / DistributedDataParallel) is stripped, so a
checkpoint written from a wrapped model loads into a bare one and back.
"""
import contextlib
import operator
import os
import tempfile

import torch

from . import _arrays
from ._context import Context
from .errors import InvalidArgumentError, MismatchError, StateError, StorageChangedError
from .files import open_file, write_safetensors

__all__ = ["EMA", "canonical_name"]

_FLOAT = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
_INT = (torch.int32, torch.int64)
_STATE_FORMAT = "libema.torch.EMA/1"


def canonical_name(name):
    """The checkpoint name of a parameter: without '_orig_mod' components
    (torch.compile) and without leading 'module.' (DataParallel, DDP)."""
    parts = [p for p in name.split(".") if p != "_orig_mod"]
    while len(parts) > 1 and parts[0] == "module":
        parts.pop(0)
    return ".".join(parts)


def _tmpdir():
    shm = "/dev/shm"
    d = shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else None
    return tempfile.TemporaryDirectory(prefix="libema-", dir=d)


class _Slot:
    """One registered tensor and where the model keeps it."""

    __slots__ = ("name", "where", "container", "attr", "tensor", "ptr", "dtype", "shape", "averaged")

    def __init__(self, name, where, container, attr, tensor, averaged):
        self.name = name            # canonical name
        self.where = where          # the model's own name (with prefixes)
        self.container = container  # module._parameters or module._buffers
        self.attr = attr
        self.tensor = tensor        # the Parameter / buffer object registered
        self.ptr = tensor.data_ptr()
        self.dtype = tensor.dtype
        self.shape = tensor.shape
        self.averaged = averaged


class EMA:
    """Exponential moving average of a torch model's parameters, by libema.

    EMA(model, decay=0.999, *, num_updates=None, zero_debias=False,
        name="ExponentialMovingAverage", threads=None, half_shadows=False,
        buffers="copy", on_replaced="error", check_storage=True)

    decay, num_updates, zero_debias, name, half_shadows: as in
        ema.ExponentialMovingAverage (TensorFlow's meaning, bit for bit;
        update(): shadow -= (1 - decay) * (shadow - param)). decay and
        num_updates are settable between steps; update(num_updates=step)
        sets the step and updates in one call.
    threads: threads an update may use (None: the library default, the
        online CPUs up to 8); the result is the same bit for bit.
    buffers: "copy" (default), "average" or "ignore"; see the module doc.
    on_replaced: what update() and the other calls do when a registered
        tensor's storage was replaced (param.data = ..., model.to(),
        model.half(), a new nn.Parameter): "error" raises
        StorageChangedError (nothing is read or written), "reregister"
        calls reregister() and goes on.
    check_storage: compare every registered tensor's data_ptr() before each
        call (microseconds per hundred tensors). False skips the check in
        update() only: then you promise not to replace storages.

    The model must live on the CPU, in contiguous memory (not channels_last).
    """

    def __init__(self, model, decay=0.999, *, num_updates=None, zero_debias=False,
                 name="ExponentialMovingAverage", threads=None, half_shadows=False, buffers="copy",
                 on_replaced="error", check_storage=True):
        if not isinstance(model, torch.nn.Module):
            raise InvalidArgumentError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if buffers not in ("copy", "average", "ignore"):
            raise InvalidArgumentError(f"buffers must be 'copy', 'average' or 'ignore', got {buffers!r}")
        if on_replaced not in ("error", "reregister"):
            raise InvalidArgumentError(f"on_replaced must be 'error' or 'reregister', got {on_replaced!r}")
        self.model = model
        self.buffers = buffers
        self.on_replaced = on_replaced
        self.check_storage = bool(check_storage)
        self._opts = dict(decay=decay, num_updates=num_updates, zero_debias=zero_debias, name=name,
                          threads=threads, half_shadows=half_shadows)
        # validate the options now (a bad decay fails here, not at register)
        self._ctx = self._new_context()
        self._registered = False
        self._set_slots([])
        self._applied = False
        self.skipped = []  # (model name, reason) of tensors left out

    def _new_context(self):
        o = self._opts
        ctx = Context(o["decay"], num_updates=o["num_updates"], zero_debias=o["zero_debias"],
                      name=o["name"], threads=o["threads"], half_shadows=o["half_shadows"])
        return ctx

    # ---------------------------------------------------------------- options
    @property
    def decay(self):
        return self._ctx.decay

    @decay.setter
    def decay(self, value):
        self._ctx.decay = value
        self._opts["decay"] = self._ctx.decay

    @property
    def num_updates(self):
        return self._ctx.num_updates

    @num_updates.setter
    def num_updates(self, n):
        self._ctx.num_updates = n
        self._opts["num_updates"] = self._ctx.num_updates

    @property
    def zero_debias(self):
        return self._ctx.zero_debias

    @property
    def name(self):
        return self._ctx.name

    @property
    def threads(self):
        return self._ctx.threads

    @threads.setter
    def threads(self, n):
        self._ctx.threads = n
        self._opts["threads"] = n

    @property
    def effective_decay(self):
        return self._ctx.effective_decay

    # ------------------------------------------------------------ registering
    def _walk(self):
        """(canonical, model name, container, attr, tensor, role) for every
        tensor of the model, each tensor once (tied weights once)."""
        seen = set()
        out = []
        for mname, mod in self.model.named_modules():
            prefix = mname + "." if mname else ""
            for attr, p in mod._parameters.items():
                if p is None or id(p) in seen:
                    continue
                seen.add(id(p))
                out.append((prefix + attr, mod._parameters, attr, p, "param"))
            nonpersistent = getattr(mod, "_non_persistent_buffers_set", set())
            for attr, b in mod._buffers.items():
                if b is None or id(b) in seen:
                    continue
                seen.add(id(b))
                if attr in nonpersistent:
                    self.skipped.append((prefix + attr, "non-persistent buffer"))
                    continue
                out.append((prefix + attr, mod._buffers, attr, b, "buffer"))
        return out

    def _plan(self):
        self.skipped = []
        plan = []
        names = {}
        for where, container, attr, t, role in self._walk():
            if role == "param" and t.requires_grad and t.dtype in _FLOAT:
                averaged = True
            elif role == "buffer" and t.dtype in _FLOAT:
                if self.buffers == "ignore":
                    self.skipped.append((where, "floating buffer (buffers='ignore')"))
                    continue
                averaged = self.buffers == "average"
            elif t.dtype in _FLOAT or t.dtype in _INT:
                averaged = False
            else:
                self.skipped.append((where, f"dtype {t.dtype} cannot be carried"))
                continue
            name = canonical_name(where)
            if name in names:
                raise InvalidArgumentError(
                    f"{where!r} and {names[name]!r} have the same canonical name {name!r} "
                    f"(after stripping 'module.' / '_orig_mod.')")
            names[name] = where
            _arrays.describe(t, repr(where))  # device / contiguity checks, before anything is registered
            plan.append((name, where, container, attr, t, averaged))
        # two tensors over the same memory would be swapped twice
        spans = sorted((t.data_ptr(), t.data_ptr() + t.numel() * t.element_size(), where)
                       for _, where, _, _, t, _ in plan if t.numel())
        end, last = 0, None
        for b0, b1, wb in spans:
            if b0 < end:
                raise InvalidArgumentError(
                    f"{last!r} and {wb!r} share memory; libema needs every registered tensor in its "
                    f"own memory (tie weights by sharing the nn.Parameter object instead)")
            if b1 > end:
                end, last = b1, wb
        return plan

    def _register_into(self, ctx):
        slots = []
        for name, where, container, attr, t, averaged in self._plan():
            ctx.track(name, t.detach(), averaged=averaged)
            slots.append(_Slot(name, where, container, attr, t, averaged))
        return slots

    def register(self):
        """Create the shadows as copies of the parameters' current values
        (the seeds' register()). Call once, after the model is built and
        placed, before training."""
        if self._registered:
            raise StateError("register() was already called; use reregister() to start over "
                             "from the model's current tensors")
        try:
            slots = self._register_into(self._ctx)
        except BaseException:
            # the library cannot unregister: start again from a fresh context
            self._ctx.close()
            self._ctx = self._new_context()
            raise
        self._set_slots(slots)
        self._registered = True
        return self

    def _set_slots(self, slots):
        self._slots = slots
        self._quick = ([s.container for s in slots], [s.attr for s in slots],
                       [s.tensor for s in slots], [s.ptr for s in slots])

    def _need_registered(self, what):
        if not self._registered:
            raise StateError(f"{what} needs register() first")

    # ---------------------------------------------------------- storage checks
    def _replaced(self, full=True):
        """Slots whose tensor was replaced. The quick test (identity of the
        model's tensor and its data_ptr, ~0.2 us a tensor) is memory-safe:
        libema's alias keeps the old storage alive, so no new tensor can
        get its address. full=True also compares dtype and shape (a view of
        the same memory set as param.data), ~2 us a tensor."""
        conts, attrs, tensors, ptrs = self._quick
        if (list(map(torch.Tensor.data_ptr, tensors)) == ptrs
                and all(map(operator.is_, map(dict.get, conts, attrs), tensors))):
            if not full:
                return []
            return [s for s in self._slots if s.tensor.dtype != s.dtype or s.tensor.shape != s.shape]
        return [s for s in self._slots
                if s.container.get(s.attr) is not s.tensor or s.tensor.data_ptr() != s.ptr
                or s.tensor.dtype != s.dtype or s.tensor.shape != s.shape]

    def _verify(self, full=True):
        bad = self._replaced(full)
        if not bad:
            return
        if self.on_replaced == "reregister" and not self._applied:
            self.reregister()
            return
        names = ", ".join(repr(s.where) for s in bad[:5]) + (" ..." if len(bad) > 5 else "")
        raise StorageChangedError(
            f"{len(bad)} registered tensor(s) no longer use the memory libema averages ({names}): "
            f"param.data was reassigned, a new nn.Parameter or buffer was set, or model.to()/"
            f".half()/.double() moved the model. Call ema.reregister() to carry the averages over "
            f"to the new tensors (or create the EMA with on_replaced='reregister'); in-place "
            f"updates (optimizer steps, param.data.copy_(), load_state_dict) are fine")

    # ----------------------------------------------------------------- updates
    def update(self, num_updates=None):
        """One EMA step over every averaged parameter, after optimizer.step():
        shadow -= (1 - d) * (shadow - param). num_updates: when given, sets
        TensorFlow's num_updates (the warm-up min(decay, (1+n)/(10+n))) first."""
        self._need_registered("update()")
        if self._applied:
            raise StateError("update() while the averages are applied (apply_shadow() without "
                             "restore(), or inside average_parameters()): it would average the averages")
        if self.check_storage:
            self._verify(full=False)
        if num_updates is not None:
            self.num_updates = num_updates
        self._ctx.apply_all()

    # -------------------------------------------------------------- evaluation
    def apply_shadow(self):
        """Put the averages into the model's parameters, in place (the
        training values are kept by libema: ema_swap, no extra memory for
        same-dtype shadows). restore() gives them back bit for bit. Do not
        train or modify the parameters in between; update() is refused."""
        self._need_registered("apply_shadow()")
        if self._applied:
            raise StateError("apply_shadow() twice: the averages are already in the model")
        self._verify()
        self._ctx.swap()
        self._applied = True

    def restore(self):
        """Give the model its training values back after apply_shadow()."""
        if not self._applied:
            raise StateError("restore() without apply_shadow(): the model already holds its training values")
        self._ctx.check_storage()
        self._ctx.swap()
        self._applied = False

    @contextlib.contextmanager
    def average_parameters(self):
        """with ema.average_parameters(): evaluate(model) -- the model holds
        the averages inside the block and its training values after it, even
        when the block raises."""
        self.apply_shadow()
        try:
            yield self.model
        finally:
            self.restore()

    @property
    def applied(self):
        """True between apply_shadow() and restore()."""
        return self._applied

    # ---------------------------------------------------------------- reading
    def average(self, name):
        """The average of a parameter (canonical or model name) as a torch
        tensor over libema's memory (zero copy; read it, do not write it).
        It follows later updates. Between apply_shadow() and restore() do not
        rely on it: for same-dtype shadows it holds the training values then."""
        self._need_registered("average()")
        name = canonical_name(name)
        return self._ctx.average_torch(name)

    @property
    def shadow(self):
        """{canonical name: average} for every averaged tensor: zero-copy views
        (the seeds' ema.shadow dict)."""
        self._need_registered("shadow")
        return {s.name: self._ctx.average_torch(s.name) for s in self._slots if s.averaged}

    def names(self, averaged=None):
        """Canonical names registered: all, only averaged (True) or only plain state (False)."""
        return [s.name for s in self._slots if averaged is None or s.averaged == averaged]

    def average_name(self, name):
        return self._ctx.average_name(canonical_name(name))

    # --------------------------------------------------------- state transfer
    # The EMA state is whatever ema_save writes besides the model's own
    # tensors: each average "<n>/<ema>", and with zero_debias (or in later
    # library versions) more tensors under "<n>/<ema>/...", plus the
    # metadata. It is moved through a checkpoint file (in /dev/shm when
    # there is one), so that the library's own writer and loader (validation,
    # all-or-nothing) define it, not a copy of their rules here.

    @staticmethod
    def _collect(ctx, slots):
        """({key: new tensor}, {metadata}) of ctx's EMA state."""
        model_keys = {s.name for s in slots}
        out = {}
        with _tmpdir() as d:
            p = os.path.join(d, "state.safetensors")
            ctx.check_storage()
            ctx.save(p)
            with open_file(p, bf16="bits") as f:
                meta = {k: v for k, v in f.metadata.items() if k not in ("libema.checksum", "libema.xxh64")}
                for key in f.keys():
                    if key in model_keys:
                        continue
                    inf = f.info(key)
                    t = torch.empty(inf.shape, dtype=_torch_dtype(inf.dtype))
                    if inf.nbytes:
                        f._read_into(key, 0, t.data_ptr(), inf.nbytes)
                    out[key] = t
        return out, meta

    @staticmethod
    def _owner(key, by_name):
        """The registered slot a state key belongs to ("<n>/..."), or None."""
        cut = len(key)
        while True:
            cut = key.rfind("/", 0, cut)
            if cut <= 0:
                return None
            s = by_name.get(key[:cut])
            if s is not None:
                return s

    def _load_state(self, ctx, slots, tensors, meta, template=None):
        """Load the EMA state {key: tensor} and metadata into ctx through a
        checkpoint file that holds the model's current values (so those are
        unchanged). template: ctx's own state ({key: tensor}, from
        _collect), which says which keys ctx needs and their dtypes and
        shapes; floating tensors are converted to the template's dtype."""
        if template is None:
            template, _ = self._collect(ctx, slots)
        entries = {s.name: s.tensor.detach() for s in slots}
        for key, want in template.items():
            v = tensors.get(key)
            if v is None:
                raise MismatchError(f"the EMA state has no tensor {key!r}")
            if not isinstance(v, torch.Tensor):
                raise MismatchError(f"{key!r} in the EMA state is not a tensor")
            if tuple(v.shape) != tuple(want.shape):
                raise MismatchError(f"{key!r} has shape {tuple(v.shape)} in the EMA state but "
                                    f"{tuple(want.shape)} is needed")
            v = v.detach().to("cpu")
            if v.dtype != want.dtype and v.is_floating_point() and want.is_floating_point():
                v = v.to(want.dtype)
            entries[key] = v.contiguous()
        with _tmpdir() as d:
            p = os.path.join(d, "state.safetensors")
            write_safetensors(p, entries, meta)
            ctx.load(p)

    def reregister(self):
        """Register the model's current tensors again, carrying the averages
        (and decay, num_updates, name, zero_debias state) over, converted to
        the new dtypes: after param.data = ..., model.to(dtype), model.half(),
        or new nn.Parameter objects. A tensor that is new gets a fresh shadow
        (a copy of its value); one that disappeared is dropped."""
        if not self._registered:
            return self.register()
        if self._applied:
            raise StateError("reregister() while the averages are applied; call restore() first")
        if self._retarget_in_place():
            return self
        old, old_slots = self._ctx, self._slots
        carried, meta = self._collect(old, old_slots)
        self._opts.update(decay=old.decay, num_updates=old.num_updates, name=old.name)
        new = self._new_context()
        if old.threads:
            new.threads = old.threads
        slots = self._register_into(new)
        fresh, _ = self._collect(new, slots)   # the library's fresh state for every tensor
        by_name = {s.name: s for s in slots}
        for s in slots:  # a tensor not averaged before starts fresh, all its state keys together
            if s.averaged and f"{s.name}/{new.name}" not in carried:
                carried.update({k: v for k, v in fresh.items() if self._owner(k, by_name) is s})
        self._load_state(new, slots, carried, meta, template=fresh)
        self._ctx = new
        self._set_slots(slots)
        old.close()
        return self

    def _retarget_in_place(self):
        """The common case of reregister(): the same tensors by name, each
        with its dtype and shape, some of them in new memory (param.data =
        ..., a new nn.Parameter of the same kind). The library points those
        at their new memory (ema_retarget) and keeps every average as it is,
        with no copy. Returns False when anything else changed."""
        plan = self._plan()
        if [p[0] for p in plan] != [s.name for s in self._slots]:
            return False
        moved = []
        for (name, where, container, attr, t, averaged), s in zip(plan, self._slots):
            if averaged != s.averaged or t.dtype != s.dtype or t.shape != s.shape:
                return False
            if t is not s.tensor or t.data_ptr() != s.ptr:
                moved.append((s, t))
        for s, t in moved:
            self._ctx.retarget(s.name, t.detach())
        self._set_slots([_Slot(name, where, container, attr, t, averaged)
                         for name, where, container, attr, t, averaged in plan])
        return True

    def state_dict(self):
        """The EMA's own state, for torch.save next to the model's state dict:
        {"format", "name", "decay", "num_updates", "zero_debias", "metadata",
        "tensors"}; tensors are keyed as in the checkpoint
        ("fc.weight/ExponentialMovingAverage", and with zero_debias
        ".../biased" and the debias counters); new tensors, not views."""
        self._need_registered("state_dict()")
        if self._applied:
            raise StateError("state_dict() while the averages are applied; call restore() first")
        self._verify()
        tensors, meta = self._collect(self._ctx, self._slots)
        return {"format": _STATE_FORMAT, "name": self.name, "decay": self.decay,
                "num_updates": self.num_updates, "zero_debias": self.zero_debias,
                "metadata": meta, "tensors": tensors}

    def load_state_dict(self, state_dict):
        """Load what state_dict() returned (averages converted to the shadow
        dtypes); decay, num_updates and name come back too. The model's
        parameters are not changed. All or nothing."""
        self._need_registered("load_state_dict()")
        if self._applied:
            raise StateError("load_state_dict() while the averages are applied; call restore() first")
        if not isinstance(state_dict, dict) or state_dict.get("format") != _STATE_FORMAT:
            raise InvalidArgumentError(
                f"not an ema.torch.EMA state dict (format {_STATE_FORMAT!r} expected)")
        if bool(state_dict["zero_debias"]) != self.zero_debias:
            raise MismatchError(
                f"the state was saved with zero_debias={bool(state_dict['zero_debias'])} but this EMA "
                f"has zero_debias={self.zero_debias}")
        self._verify()
        meta = {str(k): str(v) for k, v in state_dict.get("metadata", {}).items()}
        self._load_state(self._ctx, self._slots, state_dict["tensors"], meta)

    # ------------------------------------------------------------- checkpoints
    def save(self, path):
        """One safetensors file (atomic): each tensor under its canonical name,
        each average under "<name>/<ema name>", plain state, the EMA state."""
        self._need_registered("save()")
        self._verify()
        self._ctx.save(path)

    def load(self, path):
        """Resume from save(): the model's tensors, the averages and the EMA
        state (decay, num_updates, name) all come back."""
        self._need_registered("load()")
        self._verify()
        self._ctx.load(path)

    def load_averages_into_model(self, path):
        """Evaluation from a checkpoint (TensorFlow's variables_to_restore()):
        each average in the file lands in its parameter, plain state
        (BatchNorm statistics, counters) in its buffer. The EMA's own
        averages are unchanged."""
        self._need_registered("load_averages_into_model()")
        self._verify()
        self._ctx.load_averages_into_model(path)

    def close(self):
        """Free the library context now (a swapped model gets its values back)."""
        self._ctx.close()
        self._applied = False

    def __repr__(self):
        n = sum(s.averaged for s in self._slots)
        return (f"EMA(decay={self.decay!r}, num_updates={self.num_updates!r}, averaged={n}, "
                f"state={len(self._slots) - n}, threads={self.threads})")


_ST_TORCH = {"F32": torch.float32, "F64": torch.float64, "F16": torch.float16, "BF16": torch.bfloat16,
             "I32": torch.int32, "I64": torch.int64}


def _torch_dtype(name):
    try:
        return _ST_TORCH[name]
    except KeyError:
        raise MismatchError(f"unexpected dtype {name} in an EMA checkpoint") from None

