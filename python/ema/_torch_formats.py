"""The peers' checkpoint formats for ema.torch.EMA, both ways, and helpers
shared with it (error sentences, copying a state dict into a module).

  "timm"           timm's state_dict_ema: a plain state_dict of the
                   averaged model (ModelEmaV2/V3 .module.state_dict()).
  "diffusers"      diffusers' EMAModel.state_dict(): decay, min_decay,
                   optimization_step, update_after_step, use_ema_warmup,
                   inv_gamma, power, shadow_params (one tensor per
                   model.parameters(), in that order).
  "ema_pytorch"    ema-pytorch's EMA.state_dict(): ema_model.<key> for the
                   averaged model's state_dict, initted, step.
  "averaged_model" torch.optim.swa_utils.AveragedModel.state_dict():
                   module.<key>, n_averaged.

Not public: see EMA.state_dict(format=...) and EMA.load_state_dict().
"""
import torch

from . import _torch_plan as _plan
from .errors import InvalidArgumentError, MismatchError, NotFoundError

FORMATS = ("timm", "diffusers", "ema_pytorch", "averaged_model")

def _names(keys, n=5):
    keys = list(keys)
    return ", ".join(map(repr, keys[:n])) + (f" and {len(keys) - n} more" if len(keys) > n else "")


def key_mismatch(what, missing, unexpected):
    parts = []
    if missing:
        parts.append(f"missing {_names(missing)}")
    if unexpected:
        parts.append(f"unexpected {_names(unexpected)}")
    return (f"{what} does not match this EMA: {'; '.join(parts)} (strict=False loads what matches and keeps "
            f"the rest)")


def not_found(name, slots):
    return NotFoundError(f"no tensor called {name!r} is registered (registered: {_names(s.name for s in slots)})")


def not_averaged(s):
    return NotFoundError(f"{s.where!r} is not averaged (it is {'copied from' if s.policy == 'copy' else 'kept as'} "
                         f"the model's value): it has no average")


def with_step(meta, step):
    meta = dict(meta)
    meta["ema.last_step"] = str(int(step))
    return meta


def load_into_module(target, sd):
    """Copy {canonical key: tensor} into target's tensors (a module of the
    same architecture, maybe wrapped), strictly: every key of its
    state_dict and no other."""
    mine = {}
    for k, t in target.state_dict(keep_vars=True).items():
        mine.setdefault(_plan.canonical_name(k), t)
    missing = [k for k in mine if k not in sd]
    unexpected = [k for k in sd if k not in mine]
    if missing or unexpected:
        raise MismatchError(key_mismatch(f"the module {type(target).__name__}", missing, unexpected))
    for k, t in mine.items():
        if tuple(sd[k].shape) != tuple(t.shape):
            raise MismatchError(
                f"{k!r} has shape {tuple(t.shape)} in the module but {tuple(sd[k].shape)} in the averages")
    with torch.no_grad():
        for k, t in mine.items():
            t.copy_(sd[k])


# --------------------------------------------------------------------------
# Export
# --------------------------------------------------------------------------

def _model_params(ema):
    """The model's parameters in model.parameters() order (tied once) with
    their slots (None for one that is not registered)."""
    by_id = {id(s.tensor): s for s in ema._slots}
    return [(p, by_id.get(id(p))) for p in ema.model.parameters()]


def export(ema, fmt):
    if fmt not in FORMATS:
        raise InvalidArgumentError(f"format must be None or one of {', '.join(map(repr, FORMATS))}, got {fmt!r}")
    sd = ema.averaged_state_dict()
    if fmt == "timm":
        return sd
    if fmt == "ema_pytorch":
        out = {f"online_model.{_plan.canonical_name(k)}": v.detach().clone()
               for k, v in ema.model.state_dict().items()}
        out.update({f"ema_model.{k}": v for k, v in sd.items()})
        out["initted"] = torch.tensor(True)
        out["step"] = torch.tensor(ema.step)
        return out
    if fmt == "averaged_model":
        out = {f"module.{k}": v for k, v in sd.items()}
        out["n_averaged"] = torch.tensor(ema.step, dtype=torch.long)
        return out
    cfg = ema._config
    shadow = []
    for p, s in _model_params(ema):
        if s is not None and s.averaged:
            shadow.append(ema.average(s.name).to(p.dtype))
        else:
            shadow.append(p.detach().clone())
    return {"decay": float(ema.decay), "min_decay": float(cfg["min_decay"]), "optimization_step": int(ema.step),
            "update_after_step": int(cfg["update_after_step"]),
            "use_ema_warmup": cfg["warmup"] == "inverse_power", "inv_gamma": float(cfg["inv_gamma"]),
            "power": float(cfg["power"]), "shadow_params": shadow}


# --------------------------------------------------------------------------
# Import
# --------------------------------------------------------------------------

def detect(sd):
    keys = list(sd.keys())
    if "shadow_params" in sd:
        return "diffusers"
    if "n_averaged" in sd and all(k == "n_averaged" or str(k).startswith("module.") for k in keys):
        return "averaged_model"
    if any(str(k).startswith("ema_model.") for k in keys):
        return "ema_pytorch"
    if keys and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in sd.items()):
        return "timm"
    return None


def _values_from_keys(ema, sd, what, strict):
    """{canonical name: tensor} of every averaged tensor from a plain
    state-dict-shaped mapping (the model's keys)."""
    vals = {_plan.canonical_name(k): v for k, v in sd.items()}
    want = {}
    for k in ema.model.state_dict().keys():
        want.setdefault(_plan.canonical_name(k), None)
    missing = [k for k in want if k not in vals]
    unexpected = [k for k in vals if k not in want]
    if strict and (missing or unexpected):
        raise MismatchError(key_mismatch(what, missing, unexpected))
    out = {}
    for s in ema._slots:
        if not s.averaged:
            continue
        v = next((vals[a] for a in s.aliases if a in vals), None)
        if v is None:
            raise MismatchError(f"{what} has no value for the averaged {s.name!r}")
        out[s.name] = _checked(v, s, what)
    return out


def _checked(v, s, what):
    if not isinstance(v, torch.Tensor):
        raise MismatchError(f"{s.name!r} in {what} is not a tensor")
    if tuple(v.shape) != tuple(s.shape):
        raise MismatchError(f"{s.name!r} has shape {tuple(v.shape)} in {what} but {tuple(s.shape)} in the model")
    if not v.is_floating_point():
        raise MismatchError(f"{s.name!r} in {what} is {v.dtype}, not a floating tensor")
    return v.detach().to("cpu")


def load(ema, kind, sd, strict):
    if kind == "timm":
        ema._load_averages(_values_from_keys(ema, sd, "timm's state_dict_ema", strict))
        return
    if kind == "ema_pytorch":
        inner = {k[len("ema_model."):]: v for k, v in sd.items() if k.startswith("ema_model.")}
        others = [k for k in sd if not k.startswith(("ema_model.", "online_model.")) and k not in ("initted", "step")]
        if strict and others:
            raise MismatchError(key_mismatch("ema-pytorch's state_dict", [], others))
        step = sd.get("step")
        ema._load_averages(_values_from_keys(ema, inner, "ema-pytorch's state_dict", strict),
                           step=None if step is None else int(step.reshape(-1)[0]))
        return
    if kind == "averaged_model":
        inner = {k[len("module."):]: v for k, v in sd.items() if k != "n_averaged"}
        ema._load_averages(_values_from_keys(ema, inner, "AveragedModel's state_dict", strict),
                           step=int(sd["n_averaged"]))
        return
    _load_diffusers(ema, sd, strict)


def _load_diffusers(ema, sd, strict):
    what = "diffusers' EMAModel state_dict"
    shadow = sd["shadow_params"]
    params = _model_params(ema)
    if not isinstance(shadow, (list, tuple)) or len(shadow) != len(params):
        raise MismatchError(f"{what} has {len(shadow) if isinstance(shadow, (list, tuple)) else 'no list of'} "
                            f"shadow_params for the model's {len(params)} parameters")
    cfg = ema._config
    if strict:
        ours = {"update_after_step": int(cfg["update_after_step"]),
                "use_ema_warmup": cfg["warmup"] == "inverse_power", "inv_gamma": float(cfg["inv_gamma"]),
                "power": float(cfg["power"]), "min_decay": float(cfg["min_decay"])}
        diff = [f"{k}={sd[k]!r} (this EMA: {v!r})" for k, v in ours.items() if k in sd and sd[k] != v]
        if diff:
            raise MismatchError(f"{what} was made with another schedule: {', '.join(diff)}; create the EMA with "
                                f"the same keywords, or load with strict=False")
    values = {}
    for (p, s), v in zip(params, shadow):
        if s is not None and s.averaged:
            values[s.name] = _checked(v, s, what)
    step = sd.get("optimization_step")
    ema._load_averages(values, step=None if step is None else int(step))
    if "decay" in sd:
        ema.decay = float(sd["decay"])
