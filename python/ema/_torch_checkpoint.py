"""Checkpoints and state transfer for ema.torch.EMA (a mixin): the EMA's
own state_dict (ours and the peers'), reregister(), safetensors
checkpoints, pickling and copies.

Not public: see ema.torch.EMA.
"""
import os
from collections.abc import Mapping
from itertools import repeat
from operator import attrgetter

import torch

from . import _torch_formats as _formats
from . import _torch_plan as _plan
from . import _torch_state as _state
from .errors import InvalidArgumentError, MismatchError, StateError
from .files import open_file

canonical_name = _plan.canonical_name
STATE_FORMAT = "libema.torch.EMA/1"


class _Spec:
    """The dtype and shape of one tensor of the EMA state (no values)."""

    __slots__ = ("shape", "dtype")

    def __init__(self, t):
        self.shape, self.dtype = t.shape, t.dtype   # a torch.Size: compared with v.shape at C speed

    def is_floating_point(self):
        return self.dtype.is_floating_point


_shape, _dtype, _device, _layout = (attrgetter(a) for a in ("shape", "dtype", "device", "layout"))
_CPU = torch.device("cpu")


def _as_template(template, tensors):
    """{key: tensor} in the template's order when every tensor of the state
    already has the template's shape and dtype and is a dense contiguous CPU
    tensor (what state_dict() returns): each test one C-level pass over the
    list, no Python code per tensor. None: the per-tensor path decides (and
    names what is wrong)."""
    keys = list(template)
    wants = list(template.values())
    vals = list(map(tensors.get, keys, wants))
    n = len(vals)
    if not (all(map(isinstance, vals, repeat(torch.Tensor)))
            and list(map(_shape, vals)) == list(map(_shape, wants))
            and list(map(_dtype, vals)) == list(map(_dtype, wants))
            and list(map(_device, vals)).count(_CPU) == n
            and list(map(_layout, vals)).count(torch.strided) == n
            and all(map(torch.Tensor.is_contiguous, vals))):
        return None
    return dict(zip(keys, vals))


class CheckpointMixin:
    # --------------------------------------------------------- state transfer
    # The EMA state is whatever ema_save writes besides the model's own
    # tensors: each average "<n>/<member>", with zero_debias more tensors
    # under "<n>/<member>/...", plus the metadata. It is moved through a
    # checkpoint file (in /dev/shm when there is one), so that the library's
    # own writer and loader (validation, all-or-nothing) define it.

    @staticmethod
    def _collect(ctx, slots):
        """({key: new tensor}, {metadata}) of ctx's EMA state."""
        return _state.collect(ctx, {s.name for s in slots})

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

    def _load_state(self, ctx, slots, tensors, meta, template=None, strict=True):
        """Load the EMA state {key: tensor} and metadata into ctx through a
        checkpoint file that holds the model's current values (so those are
        unchanged). template: ctx's own state, which says which keys ctx
        needs and their dtypes and shapes. strict: missing and unexpected
        keys are an error (naming them); otherwise missing keys keep their
        current values and unexpected ones are ignored."""
        if template is None:
            template = self._spec(ctx, slots)
        missing = [k for k in template if k not in tensors]
        unexpected = [k for k in tensors if k not in template]
        if strict and (missing or unexpected):
            raise MismatchError(_formats.key_mismatch("the EMA state", missing, unexpected))
        if missing and any(not isinstance(template[k], torch.Tensor) for k in missing):
            template, _ = self._collect(ctx, slots)   # the current values of the missing keys
        # the library loads the state alone (the model is untouched) or a whole
        # checkpoint, whose model tensors are the current values
        entries = {} if _state.state_only() else {s.name: _plan.memory_view(s.tensor.detach(), s.perm)
                                                  for s in slots}
        if not entries:
            fast = _as_template(template, tensors)
            if fast is not None:
                _state.load(ctx, fast, meta, template)
                return
        exact = not entries   # the entries match the template: keys, order, dtypes, shapes
        for key, want in template.items():
            v = tensors.get(key, want)
            if not isinstance(v, torch.Tensor):
                raise MismatchError(f"{key!r} in the EMA state is not a tensor")
            if v.shape != want.shape:
                raise MismatchError(f"{key!r} has shape {tuple(v.shape)} in the EMA state but "
                                    f"{tuple(want.shape)} is needed")
            v = v.detach()
            if v.device.type != "cpu":
                v = v.to("cpu")
            if v.dtype != want.dtype:
                if v.is_floating_point() and want.is_floating_point():
                    v = v.to(want.dtype)
                else:
                    exact = False
            entries[key] = v.contiguous()
        _state.load(ctx, entries, meta, template if exact else None)

    def _spec(self, ctx, slots):
        """{key: torch.empty(shape, dtype)} of ctx's EMA state (what a load
        needs), kept until the registration changes."""
        cache = getattr(self, "_spec_cache", None)
        if cache is None or cache[0] is not ctx or cache[1] is not slots:
            state, _ = self._collect(ctx, slots)
            cache = (ctx, slots, {k: _Spec(v) for k, v in state.items()})
            self._spec_cache = cache
        return cache[2]

    def reregister(self):
        """Register the model's current tensors again, carrying the averages
        (and the EMA state) over, converted to the new dtypes: after
        param.data = ..., model.to(dtype), model.half(), new nn.Parameter
        objects, a parameter added or unfrozen. A tensor that is new to the
        averages gets a fresh shadow (a copy of its value); one that
        disappeared is dropped."""
        if not self._registered:
            return self.register()
        if self._applied or self._stored:
            raise StateError("reregister() while the averages are applied; call restore() first")
        if self._retarget_in_place():
            return self
        old, old_slots = self._ctx, self._slots
        carried, meta = self._collect(old, old_slots)
        new = self._new_context()
        new.decay = old.decay
        if old.num_updates is not None:
            new.num_updates = old.num_updates
        if old.threads:
            new.threads = old.threads
        slots, skipped = self._register_into(new)
        fresh, fresh_meta = self._collect(new, slots)   # the library's fresh state for every tensor
        # the policies are the new registration's; the rest of the EMA state is carried
        meta = {k: v for k, v in meta.items() if not k.startswith("ema.policy.")}
        meta.update({k: v for k, v in fresh_meta.items() if k.startswith("ema.policy.")})
        by_name = {s.name: s for s in slots}
        for s in slots:  # a tensor not averaged before starts fresh, all its state keys together
            if s.averaged and f"{s.name}/{new.name}" not in carried:
                carried.update({k: v for k, v in fresh.items() if self._owner(k, by_name) is s})
        carried = {k: v for k, v in carried.items() if k in fresh}
        self._load_state(new, slots, carried, meta, template=fresh)
        self._ctx = new
        self.skipped = skipped
        self._set_slots(slots)
        old.close()
        return self

    def _retarget_in_place(self):
        """The common case of reregister(): the same tensors by name, each
        with its dtype, shape, layout and policy, some of them in new memory.
        The library points those at their new memory and keeps every average
        as it is, with no copy. Returns False when anything else changed."""
        skipped = []
        try:
            plan = _plan.plan(self.model, self.buffers, self._ignore, skipped)
        except InvalidArgumentError:
            return False
        if [p.name for p in plan] != [s.name for s in self._slots]:
            return False
        moved = []
        for p, s in zip(plan, self._slots):
            if p.policy != s.policy or p.dtype != s.dtype or p.shape != s.shape or p.perm != s.perm:
                return False
            if p.tensor is not s.tensor or p.ptr != s.ptr:
                moved.append(p)
        for p in moved:
            self._ctx.retarget(p.name, _plan.memory_view(p.tensor.detach(), p.perm))
        self.skipped = skipped
        self._set_slots(plan)
        return True

    def state_dict(self, format=None):
        """The EMA's own state, for torch.save next to the model's state dict.
        format None: {"format", "name", "decay", "num_updates", "step",
        "zero_debias", "metadata", "tensors"} (tensors keyed as in the
        checkpoint, "fc.weight/ExponentialMovingAverage", ...; new tensors).
        format "timm" | "diffusers" | "ema_pytorch" | "averaged_model": the
        peer's own state_dict (see python/README.md); load_state_dict()
        takes each back."""
        self._need_registered("state_dict()")
        if self._applied:
            raise StateError("state_dict() while the averages are applied; call restore() first")
        if format is not None:
            return _formats.export(self, format)
        self._verify()
        tensors, meta = self._collect(self._ctx, self._slots)
        return {"format": STATE_FORMAT, "name": self.name, "decay": self.decay,
                "num_updates": self.num_updates, "step": self.step, "zero_debias": self.zero_debias,
                "metadata": meta, "tensors": tensors}

    def load_state_dict(self, state_dict, strict=True):
        """Load what state_dict() returned (ours or a peer's: the format is
        recognised from its keys); the model's parameters are not changed.
        strict (default): missing and unexpected keys are an error that
        names them. All or nothing."""
        self._need_registered("load_state_dict()")
        if self._applied:
            raise StateError("load_state_dict() while the averages are applied; call restore() first")
        if not isinstance(state_dict, Mapping):
            raise InvalidArgumentError(f"load_state_dict() takes a dict, got {type(state_dict).__name__}")
        if state_dict.get("format") != STATE_FORMAT:
            kind = _formats.detect(state_dict)
            if kind is None:
                raise InvalidArgumentError(
                    f"not an EMA state dict: neither ema.torch.EMA's (format {STATE_FORMAT!r}) nor "
                    f"timm's, diffusers', ema-pytorch's or AveragedModel's")
            return _formats.load(self, kind, state_dict, strict)
        if bool(state_dict["zero_debias"]) != self.zero_debias:
            raise MismatchError(
                f"the state was saved with zero_debias={bool(state_dict['zero_debias'])} but this EMA "
                f"has zero_debias={self.zero_debias}")
        self._verify()
        meta = {str(k): str(v) for k, v in state_dict.get("metadata", {}).items()}
        self._load_state(self._ctx, self._slots, state_dict["tensors"], meta, strict=strict)
        self.step = int(state_dict.get("step", self.step))
        self._updates += 1

    def _load_averages(self, values, k=0, step=None):
        """Set the averages of member k from {canonical name: tensor}; an
        averaged tensor missing from values keeps its average (diffusers'
        format carries parameters only). Used by the peers' formats."""
        if self.zero_debias:
            raise MismatchError("a peer's checkpoint holds plain averages, which a zero_debias EMA cannot take "
                                "(its state is a biased accumulator and counters): create the EMA without "
                                "zero_debias to load it")
        template, meta = self._collect(self._ctx, self._slots)
        member = self.members[k]
        tensors = dict(template)
        for s in self._slots:
            if s.averaged and s.name in values:
                v = values[s.name]
                tensors[f"{s.name}/{member}"] = _plan.memory_view(v.detach(), s.perm).contiguous()
        if step is not None and self._mode == "update":
            meta = _formats.with_step(meta, step)
        self._load_state(self._ctx, self._slots, tensors, meta, template=template)
        if step is not None:
            self.step = int(step)
        self._updates += 1

    # ------------------------------------------------------------- checkpoints
    def save(self, path):
        """One safetensors file (atomic): each tensor under its canonical name,
        each average under "<name>/<member>", the EMA state."""
        self._need_registered("save()")
        self._verify()
        self._ctx.save(path)

    def load(self, path, strict=True):
        """Resume from save(): the model's tensors, the averages and the EMA
        state all come back. strict: a file with tensors this EMA does not
        have is refused (naming them)."""
        self._need_registered("load()")
        self._verify()
        if strict:
            with open_file(path) as f:
                theirs = set(f.keys())
            mine = set(self._collect(self._ctx, self._slots)[0]) | {s.name for s in self._slots}
            extra = sorted(theirs - mine)
            if extra:
                raise MismatchError(_formats.key_mismatch(f"{os.fspath(path)!r}", [], extra))
        self._ctx.load(path)
        if self._mode == "update":
            self.step = max(self.step, self._ctx.last_step)
        elif self._warmup == "tf" and self._ctx.num_updates is not None:
            self.step = self._ctx.num_updates
        self._updates += 1

    def load_averages_into_model(self, path, member=None):
        """Evaluation from a checkpoint (TensorFlow's variables_to_restore()):
        each average (of member, default 0) in the file lands in its
        parameter, the copied tensors in theirs. The EMA's own averages are
        unchanged."""
        self._need_registered("load_averages_into_model()")
        self._verify()
        k = self._member(member)
        if len(self._members) > 1:
            self._ctx.bank_set_active(k)
        try:
            self._ctx.load_averages_into_model(path)
        finally:
            if len(self._members) > 1:
                self._ctx.bank_set_active(0)
        _plan.bump_versions(self._swapped_tensors)

    # --------------------------------------------------------- pickle, copies
    def __getstate__(self):
        if self._applied or self._stored:
            raise StateError("cannot pickle or copy an EMA while its averages are applied; call restore() first")
        state = {"model": self.model, "config": self._config, "registered": self._registered,
                 "step": self.step, "decay": self.decay}
        if self._registered:
            state["state"] = self.state_dict()
        return state

    def __setstate__(self, state):
        self.__init__(state["model"], **state["config"])
        self.decay = state["decay"]
        if state["registered"]:
            self.register()
            self.load_state_dict(state["state"])
        self.step = state["step"]

    def close(self):
        """Free the library context now (a swapped model gets its values back)."""
        _plan.unmark_applied(self._swapped_ptrs, self)
        self._ctx.close()
        self._applied = False
        self._stored = False

    def __repr__(self):
        n = sum(s.averaged for s in self._slots)
        return (f"EMA(decay={self.decay!r}, members={self.members}, step={self.step}, averaged={n}, "
                f"other={len(self._slots) - n}, threads={self.threads})")
