"""What ema.torch.EMA registers, and how: the walk over a model, the
per-tensor policy (average / copy / keep / left out), memory layouts, the
schedules from the constructor's keywords, and the guards that keep several
EMA objects on one model from corrupting each other.

Not public: see ema.torch.
"""
import fnmatch
import math
import operator
import threading
import weakref

import torch

from . import _lib
from .errors import InvalidArgumentError

FLOAT = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
INT = (torch.int32, torch.int64)
AVERAGE, COPY, KEEP = "average", "copy", "keep"
BUFFER_MODES = ("average", "copy", "keep", "ignore")


def canonical_name(name):
    """The checkpoint name of a parameter: without '_orig_mod' components
    (torch.compile) and without leading 'module.' (DataParallel, DDP)."""
    parts = [p for p in name.split(".") if p != "_orig_mod"]
    while len(parts) > 1 and parts[0] == "module":
        parts.pop(0)
    return ".".join(parts)


# --------------------------------------------------------------------------
# Layouts
# --------------------------------------------------------------------------

def dense_permutation(t):
    """None for a C-contiguous tensor; for one that is dense and
    non-overlapping in another order (channels_last, a transpose), the
    permutation p such that t.permute(p) is C-contiguous (the memory order).
    Raises InvalidArgumentError for strided views with gaps or overlaps."""
    if t.numel() <= 1 or t.is_contiguous():
        return None
    dims = sorted(range(t.dim()), key=lambda d: (-t.stride(d), -t.size(d)))
    expect = 1
    for d in reversed(dims):
        if t.size(d) != 1 and t.stride(d) != expect:
            raise InvalidArgumentError(
                f"is a strided view with gaps or overlaps in memory (shape {tuple(t.shape)}, strides "
                f"{tuple(t.stride())}); libema averages a tensor in place over its storage span, so "
                f"it needs dense memory (contiguous, channels_last or a transpose of one)")
        expect *= t.size(d)
    return tuple(dims)


def memory_view(t, perm):
    """t seen in its memory order (a C-contiguous view of the same storage)."""
    return t if perm is None else t.permute(perm)


def logical_view(m, perm):
    """The inverse of memory_view: a tensor in memory order seen with the
    model tensor's dims."""
    if perm is None:
        return m
    inv = [0] * len(perm)
    for i, d in enumerate(perm):
        inv[d] = i
    return m.permute(inv)


# --------------------------------------------------------------------------
# The walk
# --------------------------------------------------------------------------

class Slot:
    """One registered tensor and where the model keeps it."""

    __slots__ = ("name", "where", "aliases", "container", "attr", "tensor", "ptr", "dtype", "shape",
                 "policy", "perm", "role", "requires_grad")

    def __init__(self, name, where, container, attr, tensor, policy, perm, role):
        self.name = name            # canonical name
        self.where = where          # the model's own name (with prefixes)
        self.aliases = [where]      # every model name of the tensor (tied weights)
        self.container = container  # module._parameters or module._buffers
        self.attr = attr
        self.tensor = tensor        # the Parameter / buffer object registered
        self.ptr = tensor.data_ptr()
        self.dtype = tensor.dtype
        self.shape = tensor.shape
        self.policy = policy        # AVERAGE, COPY or KEEP
        self.perm = perm            # None, or the memory order (dense_permutation)
        self.role = role            # "param" or "buffer"
        self.requires_grad = tensor.requires_grad

    @property
    def averaged(self):
        return self.policy == AVERAGE


def compile_ignore(ignore):
    if isinstance(ignore, str):
        ignore = (ignore,)
    try:
        pats = tuple(ignore)
    except TypeError:
        raise InvalidArgumentError(f"ignore must be names or glob patterns, got {ignore!r}") from None
    for p in pats:
        if not isinstance(p, str) or not p:
            raise InvalidArgumentError(f"ignore must be names or glob patterns (str), got {p!r}")
    return pats


def is_ignored(name, where, pats):
    for p in pats:
        if name == p or where == p or fnmatch.fnmatchcase(name, p) or name.startswith(p + "."):
            return True
    return False


def walk(model):
    """[(model name, container, attr, tensor, role, persistent)] for every
    tensor of the model, each tensor once (tied weights under their first
    name), plus {id(tensor): [every model name]}."""
    seen = {}
    out = []
    for mname, mod in model.named_modules(remove_duplicate=False):
        prefix = mname + "." if mname else ""
        for attr, p in mod._parameters.items():
            if p is None:
                continue
            if id(p) in seen:
                seen[id(p)].append(prefix + attr)
                continue
            seen[id(p)] = [prefix + attr]
            out.append((prefix + attr, mod._parameters, attr, p, "param", True))
        nonpersistent = getattr(mod, "_non_persistent_buffers_set", set())
        for attr, b in mod._buffers.items():
            if b is None:
                continue
            if id(b) in seen:
                seen[id(b)].append(prefix + attr)
                continue
            seen[id(b)] = [prefix + attr]
            out.append((prefix + attr, mod._buffers, attr, b, "buffer", attr not in nonpersistent))
    return out, seen


def structure_key(model):
    """A cheap fingerprint of the module tree: (every module's parameter,
    buffer and submodule dicts, whose sizes change when a tensor or module
    is added; (dicts, keys, children) of every submodule link, whose
    identity changes when a submodule is replaced)."""
    mods = list(model.modules())
    dicts = [m._parameters for m in mods] + [m._buffers for m in mods] + [m._modules for m in mods]
    links = ([], [], [])
    for m in mods:
        for k, c in m._modules.items():
            links[0].append(m._modules)
            links[1].append(k)
            links[2].append(c)
    return dicts, links


def dict_sizes(dicts):
    return list(map(len, dicts))


def plan(model, buffers, ignore, skipped, any_device=False):
    """[Slot] to register. skipped (a list) receives (model name, reason).
    any_device: tensors may live on any device (the offloaded EMA copies
    them; otherwise libema reads their memory, which must be host memory)."""
    tensors, aliases = walk(model)
    slots, names = [], {}
    for where, container, attr, t, role, persistent in tensors:
        name = canonical_name(where)
        if not persistent:
            skipped.append((where, "non-persistent buffer"))
            continue
        if is_ignored(name, where, ignore):
            skipped.append((where, "ignored (ignore=...)"))
            continue
        if t.dtype not in FLOAT and t.dtype not in INT:
            skipped.append((where, f"dtype {t.dtype} cannot be carried"))
            continue
        if role == "param":
            policy = AVERAGE if (t.requires_grad and t.dtype in FLOAT) else COPY
        elif t.dtype in INT:
            policy = COPY
        elif buffers == "ignore":
            skipped.append((where, "floating buffer (buffers='ignore')"))
            continue
        else:
            policy = {"average": AVERAGE, "copy": COPY, "keep": KEEP}[buffers]
        if name in names:
            raise InvalidArgumentError(
                f"{where!r} and {names[name]!r} have the same canonical name {name!r} "
                f"(after stripping 'module.' / '_orig_mod.')")
        names[name] = where
        check_tensor(t, where, any_device)
        try:
            perm = dense_permutation(t)
        except InvalidArgumentError as e:
            raise InvalidArgumentError(f"{where!r} {e.message}") from None
        s = Slot(name, where, container, attr, t, policy, perm, role)
        s.aliases = [canonical_name(a) for a in aliases[id(t)]]
        slots.append(s)
    check_disjoint(slots)
    return slots


def check_tensor(t, where, any_device=False):
    if t.device.type != "cpu" and not any_device:
        raise InvalidArgumentError(
            f"{where!r} is on {t.device}; this EMA averages host (CPU) memory in place: for a model "
            f"on a device, EMA(model, ..., device='cpu') keeps the averages in host memory (copied "
            f"asynchronously) and EMA(model, ...) without device= keeps them on the model's device")
    if t.layout != torch.strided:
        raise InvalidArgumentError(f"{where!r} has layout {t.layout}; only dense (strided) tensors can be averaged")


def check_disjoint(slots):
    """Two registered tensors over the same memory would be swapped twice."""
    spans = sorted((s.tensor.data_ptr(), s.tensor.data_ptr() + s.tensor.numel() * s.tensor.element_size(),
                    s.where) for s in slots if s.tensor.numel())
    end, last = 0, None
    for b0, b1, wb in spans:
        if b0 < end:
            raise InvalidArgumentError(
                f"{last!r} and {wb!r} share memory; libema needs every registered tensor in its "
                f"own memory (tie weights by sharing the nn.Parameter object instead)")
        if b1 > end:
            end, last = b1, wb


# --------------------------------------------------------------------------
# Schedules
# --------------------------------------------------------------------------

def _number(v, what, lo=None, hi=None, lo_open=False):
    if isinstance(v, bool) or not isinstance(v, (int, float)) and not hasattr(v, "__float__"):
        raise InvalidArgumentError(f"{what} must be a number, got {v!r}")
    x = float(v)
    bad = math.isnan(x) or (lo is not None and (x <= lo if lo_open else x < lo)) or (hi is not None and x > hi)
    if bad:
        rng = f"{'(' if lo_open else '['}{lo}, {hi if hi is not None else 'inf'}]"
        raise InvalidArgumentError(f"{what} must be in {rng}, got {v!r}")
    return x


def _int(v, what, lo):
    if isinstance(v, bool) or not hasattr(v, "__index__"):
        raise InvalidArgumentError(f"{what} must be an int >= {lo}, got {v!r}")
    n = int(v.__index__())
    if n < lo:
        raise InvalidArgumentError(f"{what} must be an int >= {lo}, got {n}")
    return n


def _tuple(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v,)


def _label(x):
    return f"{x:.10g}"


def schedules(decay, min_decay, warmup, inv_gamma, power, update_after_step, update_every, sigma_rel, gamma,
              half_life, name):
    """(mode, [(member name, _lib.Schedule)]) from the constructor's keywords.
    mode "tf": TensorFlow's ema_apply (a scalar constant decay, warmup None or
    "tf"); mode "update": ema_update with one schedule per member."""
    if warmup not in (None, "tf", "inverse_power"):
        raise InvalidArgumentError(f"warmup must be None, 'tf' or 'inverse_power', got {warmup!r}")
    kinds = [k for k, v in (("sigma_rel", sigma_rel), ("gamma", gamma), ("half_life", half_life)) if v is not None]
    if len(kinds) > 1:
        raise InvalidArgumentError(f"{' and '.join(kinds)} select different schedules: give one of them")
    if kinds and decay is not None:
        raise InvalidArgumentError(f"decay and {kinds[0]} select different schedules: give one of them")
    if kinds and warmup is not None:
        raise InvalidArgumentError(f"warmup={warmup!r} applies to a decay, not to {kinds[0]}")
    if min_decay != 0.0 and warmup != "inverse_power":
        raise InvalidArgumentError("min_decay is the floor of warmup='inverse_power'; set that warm-up too")
    uas = _int(update_after_step, "update_after_step", 0)
    inv_gamma = _number(inv_gamma, "inv_gamma", 0.0, None, lo_open=True)
    power = _number(power, "power", 0.0, None, lo_open=True)
    min_decay = _number(min_decay, "min_decay", 0.0, 1.0)
    if kinds:
        key = kinds[0]
        values = _tuple({"sigma_rel": sigma_rel, "gamma": gamma, "half_life": half_life}[key])
        kind = _lib.SCHEDULE_HALFLIFE if key == "half_life" else _lib.SCHEDULE_POWER
    else:
        key = "decay"
        values = _tuple(0.999 if decay is None else decay)
        kind = _lib.SCHEDULE_INV_POWER if warmup == "inverse_power" else _lib.SCHEDULE_CONSTANT
    if not values:
        raise InvalidArgumentError(f"{key} must be a number or a tuple of numbers, got ()")
    if len(values) > 8:
        raise InvalidArgumentError(f"at most 8 averages in one EMA, got {len(values)}")
    names = _member_names(name, key, values)
    every = _int(update_every, "update_every", 1)
    tf = kind == _lib.SCHEDULE_CONSTANT and len(values) == 1 and uas == 0 and every == 1
    if warmup == "tf" and not tf:
        raise InvalidArgumentError("warmup='tf' is TensorFlow's rule for one constant decay: it does not "
                                   "combine with update_after_step, update_every or several decays")
    out = []
    for v, n in zip(values, names):
        s = _lib.Schedule()
        _lib.lib.ema_schedule_init(__import__("ctypes").byref(s), kind)
        if key == "decay":
            s.decay = _number(v, "decay", 0.0, 1.0)
            s.min_decay, s.inv_gamma, s.power = min_decay, inv_gamma, power
        elif key == "sigma_rel":
            s.sigma_rel = _number(v, "sigma_rel", 0.0, 0.28867513459481287, lo_open=True)
            s.gamma = 0.0
        elif key == "gamma":
            s.gamma = _number(v, "gamma", -1.0, None, lo_open=True)
            s.sigma_rel = 0.0
        else:
            s.halflife = _number(v, "half_life", 0.0, None, lo_open=True)
        s.update_after_step = uas
        out.append((n, s, float(v)))
    return ("tf" if tf else "update"), out


def _member_names(name, key, values):
    if name is None:
        if len(values) == 1:
            return ["ExponentialMovingAverage"]
        prefix = {"decay": "ema", "sigma_rel": "sigma_rel", "gamma": "gamma", "half_life": "half_life"}[key]
        names = [f"{prefix}_{_label(float(v))}" for v in values]
    else:
        names = list(_tuple(name))
        if len(names) != len(values):
            raise InvalidArgumentError(f"name has {len(names)} entries for {len(values)} averages")
    if len(set(names)) != len(names):
        raise InvalidArgumentError(f"the averages need different names, got {names}")
    return names


# --------------------------------------------------------------------------
# Guards between EMA objects on one model
# --------------------------------------------------------------------------

_applied_lock = threading.Lock()
_applied = {}  # data_ptr of a model tensor holding averages -> weakref to the EMA whose averages they are


def applied_owner(ptrs, me):
    """The other EMA whose averages are in any of the tensors at ptrs, or None."""
    if not _applied:
        return None
    with _applied_lock:
        for p in ptrs:
            r = _applied.get(p)
            if r is not None:
                o = r()
                if o is not None and o is not me:
                    return o
    return None


def mark_applied(ptrs, me):
    with _applied_lock:
        for p in ptrs:
            _applied[p] = weakref.ref(me)


def unmark_applied(ptrs, me):
    with _applied_lock:
        for p in ptrs:
            r = _applied.get(p)
            if r is not None and r() in (me, None):
                del _applied[p]


def bump_versions(tensors):
    """Tell autograd the tensors changed (an in-place op on an empty view
    increments a tensor's version counter and touches no element): a graph
    that saved them then raises at backward() instead of using the values
    swapped in under it."""
    with torch.no_grad():
        for t in tensors:
            t.detach().as_strided((0,), (1,)).zero_()


versions = operator.attrgetter("_version")
