"""Reference EMA classes for the tests and the benchmarks, written here from
each peer's published formulas and defaults (the peers cannot be installed
on this machine). They are deliberately plain: one Python loop per tensor,
torch arithmetic, no cleverness, so that a disagreement with ema.torch.EMA
points at ema.torch.

  SeedEMA            the seeds' hand-written class (register / update):
                     new = (1 - decay) * param + decay * shadow
  TimmModelEmaV3     timm.utils.ModelEmaV3: a deep copy of the model; with a
                     step, t = max(0, step - update_after_step - 1), decay 0
                     while t <= 0, else the inverse-power warm-up clamped to
                     [min_decay, decay] (use_warmup) or the decay; every
                     floating state_dict entry lerped, others copied
                     (exclude_buffers: parameters lerped, buffers copied)
  DiffusersEMAModel  diffusers.training_utils.EMAModel over a parameter list:
                     optimization_step += 1, t = max(0, step -
                     update_after_step - 1), decay 0 while t <= 0, else
                     1 - (1 + t/inv_gamma)^-power (use_ema_warmup) or
                     (1 + t)/(10 + t), then min(decay) and max(min_decay);
                     s -= (1 - decay) (s - p) for parameters with
                     requires_grad, copy for the others
  EmaPytorchEMA      ema_pytorch.EMA: a step counter from 0; the first call
                     copies the model; later calls update when step %
                     update_every == 0 (step before incrementing it): a copy
                     while step <= update_after_step, else a lerp of every
                     floating parameter and buffer with decay 0 for
                     t = step' - update_after_step - 1 <= 0 (step' after the
                     increment), else the inverse-power warm-up clamped to
                     [min_value, beta]
  LerpEMA            any per-step decay function d(step): shadow.lerp_(p, 1 - d)
                     (power-function EMA: d = (1 - 1/t)^(gamma+1); half-life:
                     d = 0.5^(1/h); TensorFlow: min(decay, (1+n)/(10+n)))
"""
import copy
import math

import torch


class SeedEMA:
    """The hand-written class of seeds/001 (register/update/apply_shadow/restore)."""

    def __init__(self, model, decay):
        self.model = model
        self.decay = decay
        self.shadow = {}
        self.backup = {}

    def register(self):
        for name, param in self.model.named_parameters():
            if param.requires_grad:
                self.shadow[name] = param.data.clone()

    def update(self):
        for name, param in self.model.named_parameters():
            if param.requires_grad:
                assert name in self.shadow
                new_average = (1.0 - self.decay) * param.data + self.decay * self.shadow[name]
                self.shadow[name] = new_average.clone()


def inverse_power(t, inv_gamma, power):
    return 1.0 - (1.0 + t / inv_gamma) ** -power


class TimmModelEmaV3:
    def __init__(self, model, decay=0.9999, min_decay=0.0, update_after_step=0, use_warmup=False,
                 warmup_gamma=1.0, warmup_power=2 / 3, exclude_buffers=False):
        self.module = copy.deepcopy(model).eval()
        self.decay, self.min_decay, self.update_after_step = decay, min_decay, update_after_step
        self.use_warmup, self.warmup_gamma, self.warmup_power = use_warmup, warmup_gamma, warmup_power
        self.exclude_buffers = exclude_buffers

    def get_decay(self, step=None):
        if step is None:
            return self.decay
        t = max(0, step - self.update_after_step - 1)
        if t <= 0:
            return 0.0
        if not self.use_warmup:
            return self.decay
        return max(min(inverse_power(t, self.warmup_gamma, self.warmup_power), self.decay), self.min_decay)

    @torch.no_grad()
    def update(self, model, step=None):
        d = self.get_decay(step)
        if self.exclude_buffers:
            for e, m in zip(self.module.parameters(), model.parameters()):
                e.lerp_(m, 1.0 - d)
            for e, m in zip(self.module.buffers(), model.buffers()):
                e.copy_(m)
            return
        for e, m in zip(self.module.state_dict().values(), model.state_dict().values()):
            if e.is_floating_point():
                e.lerp_(m, 1.0 - d)
            else:
                e.copy_(m)


class DiffusersEMAModel:
    def __init__(self, parameters, decay=0.9999, min_decay=0.0, update_after_step=0, use_ema_warmup=False,
                 inv_gamma=1.0, power=2 / 3):
        self.shadow_params = [p.clone().detach() for p in parameters]
        self.decay, self.min_decay, self.update_after_step = decay, min_decay, update_after_step
        self.use_ema_warmup, self.inv_gamma, self.power = use_ema_warmup, inv_gamma, power
        self.optimization_step = 0

    def get_decay(self, optimization_step):
        t = max(0, optimization_step - self.update_after_step - 1)
        if t <= 0:
            return 0.0
        cur = inverse_power(t, self.inv_gamma, self.power) if self.use_ema_warmup else (1 + t) / (10 + t)
        return max(min(cur, self.decay), self.min_decay)

    @torch.no_grad()
    def step(self, parameters):
        self.optimization_step += 1
        one_minus = 1.0 - self.get_decay(self.optimization_step)
        for s, p in zip(self.shadow_params, parameters):
            if p.requires_grad:
                s.sub_(one_minus * (s - p))
            else:
                s.copy_(p)

    def state_dict(self):
        return {"decay": self.decay, "min_decay": self.min_decay, "optimization_step": self.optimization_step,
                "update_after_step": self.update_after_step, "use_ema_warmup": self.use_ema_warmup,
                "inv_gamma": self.inv_gamma, "power": self.power, "shadow_params": self.shadow_params}


class EmaPytorchEMA:
    def __init__(self, model, beta=0.9999, update_after_step=100, update_every=10, inv_gamma=1.0, power=2 / 3,
                 min_value=0.0):
        self.online_model = model
        self.ema_model = copy.deepcopy(model).requires_grad_(False)
        self.beta, self.update_after_step, self.update_every = beta, update_after_step, update_every
        self.inv_gamma, self.power, self.min_value = inv_gamma, power, min_value
        self.step = 0
        self.initted = False

    def _pairs(self):
        ema = dict(self.ema_model.named_parameters())
        ema.update((n, b) for n, b in self.ema_model.named_buffers() if b.is_floating_point())
        on = dict(self.online_model.named_parameters())
        on.update((n, b) for n, b in self.online_model.named_buffers() if b.is_floating_point())
        return [(ema[n], on[n]) for n in ema]

    def current_decay(self):
        t = max(self.step - self.update_after_step - 1, 0)
        if t <= 0:
            return 0.0
        return min(max(inverse_power(t, self.inv_gamma, self.power), self.min_value), self.beta)

    @torch.no_grad()
    def update(self):
        step = self.step
        self.step += 1
        if not self.initted:
            for e, m in self._pairs():
                e.copy_(m)
            self.initted = True
            return
        if step % self.update_every != 0:
            return
        if step <= self.update_after_step:
            for e, m in self._pairs():
                e.copy_(m)
            return
        d = self.current_decay()
        for e, m in self._pairs():
            e.lerp_(m, 1.0 - d)

    def state_dict(self):
        out = {f"online_model.{k}": v for k, v in self.online_model.state_dict().items()}
        out.update({f"ema_model.{k}": v for k, v in self.ema_model.state_dict().items()})
        out["initted"] = torch.tensor(self.initted)
        out["step"] = torch.tensor(self.step)
        return out


class LerpEMA:
    """shadow.lerp_(param, 1 - decay_fn(step)) for every parameter, step from 1."""

    def __init__(self, model, decay_fn):
        self.model = model
        self.decay_fn = decay_fn
        self.shadow = {n: p.detach().clone() for n, p in model.named_parameters()}
        self.step = 0

    @torch.no_grad()
    def update(self):
        self.step += 1
        d = self.decay_fn(self.step)
        for n, p in self.model.named_parameters():
            self.shadow[n].lerp_(p, 1.0 - d)


def power_decay(gamma):
    return lambda t: (1.0 - 1.0 / t) ** (gamma + 1.0)


def half_life_decay(h):
    return lambda t: 0.5 ** (1.0 / h)


def sigma_rel_to_gamma(sigma_rel):
    """The power-function exponent of a relative width (EDM2, eq. 3), by bisection."""
    lo, hi = 0.0, 1.0 / sigma_rel
    for _ in range(200):
        g = 0.5 * (lo + hi)
        s = math.sqrt((g + 1) / ((g + 2) ** 2 * (g + 3)))
        lo, hi = (g, hi) if s > sigma_rel else (lo, g)
    return 0.5 * (lo + hi)
