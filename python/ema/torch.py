"""ema.torch.EMA: the PyTorch EMA class, with the averages kept by libema in
place over the parameters' own memory: no copy of the model, no
per-parameter Python loop in the update. It speaks the peers' languages:
the seeds' register / update / apply_shadow / restore, diffusers' store /
copy_to / restore, timm's ema.module and update(model, step), ema-pytorch's
ema_model and ema(x), and their schedules and checkpoints (see
python/README.md for the migration table).

    from ema.torch import EMA
    ema = EMA(model, 0.999).register()
    for step, batch in enumerate(data, 1):
        loss(model, batch).backward(); optimizer.step(); optimizer.zero_grad()
        ema.update()
    with ema.average_parameters():      # the model holds the averages here
        evaluate(model)

What is registered, per tensor (the "policy"):
  - parameters with requires_grad (floating): averaged;
  - floating buffers (BatchNorm running statistics): averaged by default
    (buffers="average", timm's default); buffers="copy" follows the model
    (the model keeps its own current statistics, saved under their names);
    buffers="keep" freezes them at registration; buffers="ignore" leaves
    them out;
  - integer buffers (num_batches_tracked): copied (they follow the model);
  - frozen parameters (requires_grad=False): copied;
  - names matching ignore=(...) (names or glob patterns), non-persistent
    buffers and dtypes libema cannot carry (bool, uint8, ...): left out,
    listed in EMA.skipped.

Names are canonical: every "_orig_mod." (torch.compile) and leading
"module." (DataParallel / DistributedDataParallel) is stripped.
"""
import operator
from itertools import chain
from collections.abc import Mapping

import torch

from . import _torch_formats as _formats
from . import _torch_plan as _plan
from ._context import Context
from ._torch_checkpoint import CheckpointMixin
from ._torch_eval import EvalMixin
from . import _arrays, _lib
from ._lib import has as _has
from .errors import InvalidArgumentError, StateError, StorageChangedError, UnsupportedError
from .files import write_safetensors

__all__ = ["EMA", "PostHocEMA", "OffloadEMA", "DeviceEMA", "canonical_name"]

canonical_name = _plan.canonical_name

# the library's calls in this class's words (errors never name C functions)
_TERMS = {
    "ema_swap": "restore()", "ema_restore": "restore()", "ema_store": "store()", "ema_copy_to": "copy_to()",
    "ema_track": "register()", "ema_track_state": "register()", "ema_track_policy": "register()",
    "ema_retarget": "reregister()", "ema_apply": "update()", "ema_update": "update()",
    "ema_save": "save()", "ema_load": "load()", "ema_save_state_buffer": "state_dict()",
    "ema_load_state_buffer": "load_state_dict()", "ema_set_name": "name=", "ema_set_zero_debias": "zero_debias=",
    "ema_add_average": "decay=(...)", "ema_bank_add": "decay=(...)",
    "ema_set_active_average": "apply_shadow(member=...)", "ema_bank_set_active": "apply_shadow(member=...)",
}


_OFFLOAD = [()]   # (OffloadEMA,) once ema._torch_offload is imported
_data_ptr = torch.Tensor.data_ptr
_dtype, _shape = operator.attrgetter("dtype"), operator.attrgetter("shape")
_requires_grad = operator.attrgetter("requires_grad")

_POLICY = {_plan.AVERAGE: _lib.POLICY_AVERAGE, _plan.COPY: _lib.POLICY_COPY, _plan.KEEP: _lib.POLICY_KEEP}
_KEEP = []


def _keep_supported():
    """Whether the library takes EMA_POLICY_KEEP (asked once, on a scratch context)."""
    if not _KEEP:
        ok = _has("ema_track_policy")
        if ok:
            probe = Context(0.5)
            try:
                probe.track("probe", torch.zeros(1), policy=_lib.POLICY_KEEP)
            except Exception:
                ok = False
            finally:
                probe.close()
        _KEEP.append(ok)
    return _KEEP[0]


class _ReadOnlyAverages(Mapping):
    """ema.shadow: {canonical name: copy of its average}, read-only."""

    def __init__(self, ema, names):
        self._ema, self._names = ema, names

    def __getitem__(self, name):
        if name not in self._names:
            raise KeyError(name)
        return self._ema.average(name)

    def __iter__(self):
        return iter(self._names)

    def __len__(self):
        return len(self._names)

    def __setitem__(self, name, value):
        raise TypeError("ema.shadow is read-only (each value is a copy of an average): change averages "
                        "with load_state_dict(), or the model with load_averages_into_model()")

    __delitem__ = __setitem__


class EMA(EvalMixin, CheckpointMixin):
    """Exponential moving average of a torch model's parameters, by libema.

    EMA(model, decay=0.999, *, min_decay=0.0, warmup=None, inv_gamma=1.0,
        power=2/3, update_after_step=0, update_every=1, sigma_rel=None,
        gamma=None, half_life=None, buffers="average", ignore=(),
        num_updates=None, zero_debias=False, name=None, threads=None,
        half_shadows=False, on_replaced="error", check_storage=True)

    Schedules (the peers' names and meanings; `step` is the training step,
    counted by the object from 1, or given to update(step=...)):
      - decay alone, warmup=None: a constant decay. With update_after_step=0
        and update_every=1 the update is TensorFlow's, bit for bit
        (shadow -= (1 - decay) * (shadow - param) in float32).
      - warmup="tf": TensorFlow's min(decay, (1 + step) / (10 + step)).
      - warmup="inverse_power" (timm, diffusers, ema-pytorch): with
        t = step - update_after_step - 1, decay 0 while t <= 0, else
        clamp(1 - (1 + t/inv_gamma)^-power, min_decay, decay).
      - sigma_rel=... or gamma=...: the power-function EMA (EDM2), decay
        (1 - 1/step)^(gamma + 1).
      - half_life=h: per-step decay 0.5^(1/h).
      - update_after_step=n: steps <= n copy the model (decay 0).
      - update_every=k: one update every k-th step, with the k-step decay
        (the product of the k per-step decays): the curve does not depend on k.
      - a tuple (decay=(0.999, 0.9999), sigma_rel=(0.05, 0.10), ...) keeps a
        bank of averages updated in one pass; each is a "member" reachable
        by index or name (ema.members; default names "ema_0.999",
        "sigma_rel_0.05", ...; name=(...) sets them).
    num_updates, zero_debias, half_shadows: as in ema.ExponentialMovingAverage.
    threads: threads an update may use (None: the library default); the
        result is the same bit for bit.
    on_replaced: "error" (default) or "reregister": what happens when a
        registered tensor's storage was replaced (param.data = ...,
        model.to(), a new nn.Parameter), or when the model's structure
        changed (a parameter added, requires_grad changed) after register().
    check_storage: False skips the per-update storage checks (you promise
        not to replace storages).
    """

    def __new__(cls, *args, device=None, **kwargs):
        # EMA(model, ..., device=...) picks where the averages live: device
        # "cpu" keeps them in host memory behind staging buffers filled by
        # (device-to-host) copies, updated asynchronously (OffloadEMA); a CUDA
        # model without device= or with its own device keeps them on the
        # device (DeviceEMA, torch foreach ops)
        if cls is EMA and args:
            from . import _torch_offload as _off
            kind = _off.pick(args[0], device)
            if kind == "device":
                return _off.DeviceEMA(*args, device=device, **kwargs)
            if kind == "offload":
                return object.__new__(_off.OffloadEMA)
        return object.__new__(cls)

    def __init__(self, model, decay=None, *, min_decay=0.0, warmup=None, inv_gamma=1.0, power=2 / 3,
                 update_after_step=0, update_every=1, sigma_rel=None, gamma=None, half_life=None,
                 buffers="average", ignore=(), num_updates=None, zero_debias=False, name=None, threads=None,
                 half_shadows=False, on_replaced="error", check_storage=True, device=None):
        if device is not None and not isinstance(self, _OFFLOAD[0]):
            raise InvalidArgumentError(f"device={device!r} is for a model whose averages live elsewhere; "
                                       f"this EMA keeps them over the model's own (CPU) memory: leave device out")
        if not isinstance(model, torch.nn.Module):
            raise InvalidArgumentError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if buffers not in _plan.BUFFER_MODES:
            raise InvalidArgumentError(f"buffers must be 'average', 'copy', 'keep' or 'ignore', got {buffers!r}")
        if on_replaced not in ("error", "reregister"):
            raise InvalidArgumentError(f"on_replaced must be 'error' or 'reregister', got {on_replaced!r}")
        self._config = dict(decay=decay, min_decay=min_decay, warmup=warmup, inv_gamma=inv_gamma, power=power,
                            update_after_step=update_after_step, update_every=update_every,
                            sigma_rel=sigma_rel, gamma=gamma, half_life=half_life, buffers=buffers,
                            ignore=ignore, num_updates=num_updates, zero_debias=zero_debias, name=name,
                            threads=threads, half_shadows=half_shadows, on_replaced=on_replaced,
                            check_storage=check_storage)
        self._mode, self._members = _plan.schedules(decay, min_decay, warmup, inv_gamma, power,
                                                    update_after_step, update_every, sigma_rel, gamma,
                                                    half_life, name)
        self._warmup = warmup
        if num_updates is not None and (self._mode != "tf" or warmup == "tf"):
            raise InvalidArgumentError("num_updates is TensorFlow's counter for a constant decay without "
                                       "warmup='tf' (which counts steps itself); the schedules use the step")
        self.update_every = _plan._int(update_every, "update_every", 1)
        self._ignore = _plan.compile_ignore(ignore)
        if buffers == "keep" and not _keep_supported():
            raise UnsupportedError("buffers='keep' needs a libema whose per-tensor policies include "
                                   "EMA_POLICY_KEEP; this one refuses it")
        self.model = model
        self.buffers = buffers
        self.on_replaced = on_replaced
        self.check_storage = bool(check_storage)
        self._opts = dict(num_updates=num_updates, zero_debias=zero_debias, threads=threads,
                          half_shadows=half_shadows)
        self._ctx = self._new_context()   # validates the options now, not at register()
        self.step = 0
        self._registered = False
        self._set_slots([])
        self._applied = False
        self._stored = False
        self._module = None
        self._module_at = None
        self._updates = 0
        self.skipped = []  # (model name, reason) of tensors left out

    def _new_context(self):
        o = self._opts
        name0, sched0, value0 = self._members[0]
        ctx = Context(value0 if self._mode == "tf" else sched0.decay, num_updates=o["num_updates"],
                      zero_debias=o["zero_debias"], name=name0, threads=o["threads"],
                      half_shadows=o["half_shadows"])
        ctx.h.terms = _TERMS
        if self._mode == "update":
            ctx.set_schedule(sched0)
            for n, s, _ in self._members[1:]:
                ctx.bank_add(n, s)
        return ctx

    # ---------------------------------------------------------------- options
    @property
    def decay(self):
        """The decay of member 0 (the largest decay of a warm-up)."""
        return self._ctx.decay

    @decay.setter
    def decay(self, value):
        self._ctx.decay = value

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
    def members(self):
        """Names of the averages kept (one, or the bank's members in order)."""
        return [n for n, _, _ in self._members]

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

    def _member(self, member):
        if member is None:
            return 0
        if isinstance(member, str):
            names = self.members
            if member not in names:
                raise InvalidArgumentError(f"no average called {member!r}; this EMA keeps {names}")
            return names.index(member)
        if isinstance(member, bool) or not hasattr(member, "__index__"):
            raise InvalidArgumentError(f"member must be an index or a name, got {member!r}")
        k = int(member.__index__())
        if not 0 <= k < len(self._members):
            raise InvalidArgumentError(f"member {k} out of range: this EMA keeps {len(self._members)} averages")
        return k

    # ------------------------------------------------------------ registering
    def _register_into(self, ctx):
        skipped = []
        slots = _plan.plan(self.model, self.buffers, self._ignore, skipped)
        if not any(s.averaged for s in slots):
            raise InvalidArgumentError(
                f"nothing to average: {type(self.model).__name__} has no floating parameter with "
                f"requires_grad (and no floating buffer with buffers='average') that is not ignored"
                + (f"; left out: {', '.join(w for w, _ in skipped[:5])}" if skipped else ""))
        for s in slots:
            ctx.track(s.name, _plan.memory_view(s.tensor.detach(), s.perm), policy=_POLICY[s.policy])
        return slots, skipped

    def register(self):
        """Create the shadows as copies of the parameters' current values
        (the seeds' register()). Call once, after the model is built and
        placed, before training. Returns self."""
        if self._registered:
            raise StateError("register() was already called; use reregister() to start over "
                             "from the model's current tensors")
        try:
            slots, skipped = self._register_into(self._ctx)
        except BaseException:
            # the library cannot unregister: start again from a fresh context
            self._ctx.close()
            self._ctx = self._new_context()
            raise
        self.skipped = skipped
        self._set_slots(slots)
        self._registered = True
        return self

    def _set_slots(self, slots):
        self._slots = slots
        self._by_name = {s.name: s for s in slots}
        self._by_alias = {a: s for s in slots for a in s.aliases}
        dicts = list({id(s.container): s.container for s in slots}.values())
        self._entries = (dicts, list(chain.from_iterable(map(dict.values, dicts))))
        self._quick = ([s.container for s in slots], [s.attr for s in slots],
                       [s.tensor for s in slots], [s.ptr for s in slots])
        self._kinds = ([s.dtype for s in slots], [s.shape for s in slots])
        swapped = [s for s in slots if s.policy != _plan.COPY]   # averaged and kept tensors
        self._swapped_slots = swapped
        self._swapped_tensors = [s.tensor for s in swapped]
        self._swapped_ptrs = [s.ptr for s in swapped]
        params = [s for s in slots if s.role == "param"]
        self._rg_tensors = [s.tensor for s in params]
        self._rg_flags = [s.requires_grad for s in params]
        self._rg_on = [s.tensor for s in params if s.requires_grad]       # must still require grad
        self._rg_off = [s.tensor for s in params if not s.requires_grad]  # must still not
        self._dicts, self._links = _plan.structure_key(self.model)
        self._sizes = _plan.dict_sizes(self._dicts)

    def _need_registered(self, what):
        if not self._registered:
            raise StateError(f"{what} needs register() first (ema = EMA(model, ...).register())")

    # ---------------------------------------------------------- storage checks
    def _replaced(self, full=True):
        """Slots whose tensor was replaced (identity and data_ptr; full=True
        also dtype and shape)."""
        conts, attrs, tensors, ptrs = self._quick
        if list(map(_data_ptr, tensors)) == ptrs and self._same_entries():
            if not full or (list(map(_dtype, tensors)) == self._kinds[0]
                            and list(map(_shape, tensors)) == self._kinds[1]):
                return []
            return [s for s in self._slots if s.tensor.dtype != s.dtype or s.tensor.shape != s.shape]
        return [s for s in self._slots
                if s.container.get(s.attr) is not s.tensor or s.tensor.data_ptr() != s.ptr
                or s.tensor.dtype != s.dtype or s.tensor.shape != s.shape]

    def _same_entries(self):
        """Every registered tensor is still the object its module holds. The
        quick test compares each container's values (a C-level list
        comparison by identity); when one differs (an unregistered entry
        reassigned, say), the exact test per tensor decides."""
        dicts, values = self._entries
        now = list(chain.from_iterable(map(dict.values, dicts)))
        if len(now) == len(values) and all(map(operator.is_, now, values)):
            return True
        conts, attrs, tensors, _ = self._quick
        if all(map(operator.is_, map(dict.get, conts, attrs), tensors)):
            self._entries = (dicts, now)
            return True
        return False

    def _unchanged(self):
        """The per-update check, every test a C-level pass over a list (no
        Python code per tensor): the data_ptr and requires_grad of every
        registered tensor, the identity of every entry of the dicts that
        hold them, the sizes of the module tree's dicts and the identity of
        its submodules. True when nothing changed since register(); False
        sends update() to the exact checks (_verify), which say what did."""
        conts, attrs, tensors, ptrs = self._quick
        return (list(map(_data_ptr, tensors)) == ptrs
                and all(map(_requires_grad, self._rg_on)) and not any(map(_requires_grad, self._rg_off))
                and self._same_entries()
                and _plan.dict_sizes(self._dicts) == self._sizes
                and all(map(operator.is_, map(dict.get, *self._links[:2]), self._links[2])))

    def _structure_changed(self):
        """A sentence saying how the model changed since register(), or None.
        The quick test compares requires_grad of every registered parameter,
        the size of every module's parameter/buffer/submodule dict and the
        identity of every submodule."""
        flags = list(map(_requires_grad, self._rg_tensors))
        if (flags == self._rg_flags and _plan.dict_sizes(self._dicts) == self._sizes
                and all(map(operator.is_, map(dict.get, *self._links[:2]), self._links[2]))):
            return None
        what = []
        flipped = [s.where for s, f in zip([s for s in self._slots if s.role == "param"], flags)
                   if f != s.requires_grad]
        if flipped:
            what.append(f"requires_grad changed for {', '.join(map(repr, flipped[:5]))}")
        known = {a for s in self._slots for a in s.aliases} | {canonical_name(w) for w, _ in self.skipped}
        tensors, _ = _plan.walk(self.model)
        new = [w for w, *_ in tensors if canonical_name(w) not in known]
        if new:
            what.append(f"tensors added after register(): {', '.join(map(repr, new[:5]))}")
        gone = {canonical_name(w) for w, *_ in tensors}
        lost = [s.where for s in self._slots if s.name not in gone]
        if lost:
            what.append(f"tensors removed: {', '.join(map(repr, lost[:5]))}")
        swapped = [w for w, _, _, t, *_ in tensors
                   if canonical_name(w) in self._by_alias and self._by_alias[canonical_name(w)].tensor is not t]
        if swapped:
            what.append(f"tensors replaced by new ones (a new submodule?): {', '.join(map(repr, swapped[:5]))}")
        if not what:  # a module added or replaced without tensors of its own: nothing to do
            self._dicts, self._links = _plan.structure_key(self.model)
            self._sizes = _plan.dict_sizes(self._dicts)
            return None
        return "; ".join(what)

    def _verify(self, full=True, structure=True):
        change = self._structure_changed() if structure else None
        bad = [] if change else self._replaced(full)
        if not bad and not change:
            return
        if self.on_replaced == "reregister" and not self._applied and not self._stored:
            self.reregister()
            return
        if change:
            raise StateError(
                f"the model changed since register(): {change}. Call ema.reregister() to register "
                f"the model as it is now (averages are carried over; a tensor that becomes averaged "
                f"starts from its current value), or create the EMA with on_replaced='reregister'")
        names = ", ".join(repr(s.where) for s in bad[:5]) + (" ..." if len(bad) > 5 else "")
        raise StorageChangedError(
            f"{len(bad)} registered tensor(s) no longer use the memory libema averages ({names}): "
            f"param.data was reassigned, a new nn.Parameter or buffer was set, or model.to()/"
            f".half()/.double() moved the model. Call ema.reregister() to carry the averages over "
            f"to the new tensors (or create the EMA with on_replaced='reregister'); in-place "
            f"updates (optimizer steps, param.data.copy_(), load_state_dict) are fine")

    def _refuse_if_other_applied(self, what):
        other = _plan.applied_owner(self._swapped_ptrs, self)
        if other is not None:
            raise StateError(
                f"{what}: the model holds the averages of another EMA ({other.name!r}, applied with "
                f"apply_shadow() or average_parameters()); restore that one first")

    # ----------------------------------------------------------------- updates
    def update(self, model=None, step=None, *, num_updates=None):
        """One EMA step after optimizer.step(). The object counts steps
        itself (ema.step); update(step=n) takes the trainer's step instead
        (it must increase). timm's update(model, step) is accepted when
        model is the registered model; update(n) is update(step=n).
        num_updates: the 0.1 spelling of TensorFlow's num_updates."""
        if model is not None:
            if isinstance(model, int) and not isinstance(model, bool) and step is None:
                step, model = model, None
            elif not isinstance(model, torch.nn.Module):
                raise InvalidArgumentError(
                    f"update() takes the registered model or a step (int), got a {type(model).__name__}")
            elif model is not self.model and not self._wraps(model):
                raise InvalidArgumentError(
                    f"update(model): this EMA averages the {type(self.model).__name__} it was created "
                    f"with; got another {type(model).__name__} (create an EMA per model)")
        self._need_registered("update()")
        if self._applied:
            raise StateError("update() while the averages are applied (apply_shadow() without "
                             "restore(), or inside average_parameters()): it would average the averages")
        if self._stored:
            raise StateError("update() while a copy_to() is pending: call restore() first")
        self._refuse_if_other_applied("update()")
        if self.check_storage and not self._unchanged():
            self._verify(full=False)
        if step is None:
            step = self.step + 1
        else:
            step = _plan._int(step, "step", 1)
            if step <= self.step:
                raise InvalidArgumentError(f"step must increase: got {step} after {self.step}")
        if num_updates is not None:
            if self._mode != "tf" or self._warmup == "tf":
                raise InvalidArgumentError("update(num_updates=...) is for a constant decay without warmup='tf'; "
                                           "the schedules take update(step=...)")
            self.num_updates = num_updates
        if step % self.update_every:
            self.step = step
            return
        self._run_update(step)
        self.step = step
        self._updates += 1

    def _run_update(self, step):
        """The library's update for step (after every check)."""
        if self._mode == "tf":
            if self._warmup == "tf":
                self._ctx.num_updates = step
            self._ctx.apply_all()
        else:
            self._ctx.update(step)

    def wait(self):
        """Wait for an asynchronous update in flight (EMA(..., device="cpu"));
        a synchronous EMA has none: returns at once."""
        return None

    def _wraps(self, model):
        """model is a wrapper (DataParallel, torch.compile) of the registered one."""
        inner = getattr(model, "module", None) or getattr(model, "_orig_mod", None)
        return inner is self.model or (inner is not None and self._wraps(inner))

    # ---------------------------------------------------------------- reading
    def _slot(self, name):
        if not isinstance(name, str):
            raise InvalidArgumentError(
                f"name must be a str (a parameter name such as 'fc.weight'), got {type(name).__name__}")
        s = self._by_alias.get(canonical_name(name))
        if s is None:
            raise _formats.not_found(name, self._slots)
        return s

    def average_view(self, name, member=None):
        """A zero-copy view of an average (in the model tensor's layout): it
        follows later updates. Read it, never write it (torch has no
        read-only tensors); between apply_shadow() and restore() it holds
        the training values."""
        self._need_registered("average_view()")
        s = self._slot(name)
        if not s.averaged:
            raise _formats.not_averaged(s)
        k = self._member(member)
        v = self._ctx.bank_average_torch(s.name, k) if len(self._members) > 1 else self._ctx.average_torch(s.name)
        return _plan.logical_view(v, s.perm)

    def average(self, name, member=None):
        """A copy of the average of a parameter (canonical or model name)."""
        return self.average_view(name, member).clone(memory_format=torch.preserve_format)

    @property
    def shadow(self):
        """{canonical name: copy of its average} for every averaged tensor,
        read-only (the seeds' ema.shadow)."""
        self._need_registered("shadow")
        return _ReadOnlyAverages(self, [s.name for s in self._slots if s.averaged])

    def names(self, averaged=None):
        """Canonical names registered: all, only averaged (True) or only the others (False)."""
        return [s.name for s in self._slots if averaged is None or s.averaged == averaged]

    def average_name(self, name):
        return self._ctx.average_name(canonical_name(name))

    def averaged_state_dict(self, member=None):
        """A plain state_dict of the averaged model (timm's state_dict_ema):
        every key of model.state_dict() (canonical names, tied weights under
        each of their names), averages for averaged tensors, the model's
        values for the others. New tensors, in the model's dtypes and layouts."""
        self._need_registered("averaged_state_dict()")
        if self._applied:
            raise StateError("averaged_state_dict() while the averages are applied; call restore() first")
        k = self._member(member)
        by_id = {id(s.tensor): s for s in self._slots}
        out = {}
        for key, t in self.model.state_dict(keep_vars=True).items():
            s = by_id.get(id(t))
            if s is not None and s.policy != _plan.COPY:
                v = self._kept_or_average(s, k).to(s.dtype).clone(memory_format=torch.preserve_format)
            else:
                v = t.detach().clone(memory_format=torch.preserve_format)
            out[canonical_name(key)] = v
        return out

    def _kept_or_average(self, s, k):
        if s.averaged:
            return self.average_view(s.name, k)
        ptr, code = self._ctx.kept_ptr(s.name, k)
        return _plan.logical_view(_arrays.torch_view(ptr, code, tuple(_plan.memory_view(s.tensor, s.perm).shape),
                                                     self._ctx.h), s.perm)

    def export(self, path, member=None):
        """Write averaged_state_dict() to a safetensors file (plain torch or
        safetensors loaders load it strictly: tied aliases included)."""
        sd = self.averaged_state_dict(member)
        write_safetensors(path, {k: v.contiguous() for k, v in sd.items()})



from ._torch_posthoc import PostHocEMA  # noqa: E402  (it builds on EMA)
from ._torch_offload import DeviceEMA, OffloadEMA  # noqa: E402,F401  (they build on EMA)
