"""ema.torch.PostHocEMA: post-hoc EMA (Karras et al. 2024, EDM2) end to end,
with ema-pytorch's names: power-function averages of a model kept by
libema (a bank, one pass per update), snapshots written every N steps into
a folder, and any sigma_rel synthesised afterwards from them.

    from ema.torch import PostHocEMA
    ph = PostHocEMA(model, sigma_rels=(0.05, 0.28), checkpoint_every_num_steps=100,
                    checkpoint_folder="ph")
    for batch in data:
        train_step(batch)
        ph.update()
    model_ema = ph.synthesize_ema_model(sigma_rel=0.15)     # an eval copy of the model
    sd, info = ph.synthesize_state_dict(sigma_rel=0.15)     # or a state_dict; info: residual, cond
"""
import copy
import os
import re

import numpy as np
import torch

from . import _torch_formats as _formats
from . import _torch_plan as _plan
from . import posthoc as _posthoc
from .errors import InvalidArgumentError, NotFoundError
from .files import open_file, read_safetensors, write_safetensors

_SNAP = re.compile(r"^(?P<member>.+)\.(?P<step>\d{10})\.safetensors$")
_STATE = "state"


class PostHocEMA:
    """PostHocEMA(model, sigma_rels=(0.05, 0.28), *, gammas=None,
                  update_every=1, checkpoint_every_num_steps=1000,
                  checkpoint_folder="./post-hoc-ema-checkpoints",
                  checkpoint_dtype=None, buffers="average", ignore=(), threads=None)

    sigma_rels (or gammas): the power-function averages kept, at least two
        (ema-pytorch's defaults; EDM2 uses 0.05 and 0.10).
    update_every: as in EMA (the k-step decay: the profiles stay exact).
    checkpoint_every_num_steps: a snapshot of every average each N steps:
        <folder>/<member>.<step>.safetensors (the averages, under the model's
        names), and <folder>/state.<step>.safetensors with the tensors that
        follow the model (copied buffers, frozen parameters, counters).
    checkpoint_dtype: None (the shadows' float32) or a torch dtype
        (torch.float16, torch.bfloat16) for the snapshot files.
    The model is registered at construction (an EMA of it is self.ema).
    """

    def __init__(self, model, sigma_rels=(0.05, 0.28), *, gammas=None, update_every=1,
                 checkpoint_every_num_steps=1000, checkpoint_folder="./post-hoc-ema-checkpoints",
                 checkpoint_dtype=None, buffers="average", ignore=(), threads=None):
        from .torch import EMA
        if gammas is not None:
            kw = {"gamma": tuple(gammas)}
            n = len(kw["gamma"])
        else:
            kw = {"sigma_rel": tuple(sigma_rels)}
            n = len(kw["sigma_rel"])
        if n < 2:
            raise InvalidArgumentError("post-hoc synthesis needs at least two averages (sigma_rels or gammas)")
        if checkpoint_dtype not in (None, torch.float32, torch.float16, torch.bfloat16, torch.float64):
            raise InvalidArgumentError(
                f"checkpoint_dtype must be None or a floating torch dtype, got {checkpoint_dtype!r}")
        self.checkpoint_every_num_steps = _plan._int(checkpoint_every_num_steps, "checkpoint_every_num_steps", 1)
        self.checkpoint_folder = os.fspath(checkpoint_folder)
        self.checkpoint_dtype = checkpoint_dtype
        self.ema = EMA(model, update_every=update_every, buffers=buffers, ignore=ignore, threads=threads,
                       **kw).register()
        os.makedirs(self.checkpoint_folder, exist_ok=True)
        self.last_info = None

    @property
    def model(self):
        return self.ema.model

    @property
    def step(self):
        return self.ema.step

    @property
    def members(self):
        return self.ema.members

    def update(self, step=None):
        """One step: the averages' update (every update_every steps), then a
        snapshot every checkpoint_every_num_steps steps."""
        self.ema.update(step=step)
        if self.ema.step % self.checkpoint_every_num_steps == 0:
            self.checkpoint()

    def _path(self, member, step):
        return os.path.join(self.checkpoint_folder, f"{member}.{step:010d}.safetensors")

    def checkpoint(self):
        """Write the snapshots of the current step now."""
        e = self.ema
        e._need_registered("checkpoint()")
        step = e.step
        for k, member in enumerate(e.members):
            p = self._path(member, step)
            e._ctx.snapshot(k, p)
            if self.checkpoint_dtype is not None:
                self._convert(p)
        follow = {s.name: _plan.memory_view(s.tensor.detach(), s.perm).contiguous()
                  for s in e._slots if not s.averaged}
        write_safetensors(self._path(_STATE, step), follow, {"ema.t": str(step)})

    def _convert(self, path):
        with open_file(path) as f:
            meta = {k: v for k, v in f.metadata.items() if k not in ("libema.checksum", "libema.xxh64")}
        arrays = read_safetensors(path)
        out = {k: torch.from_numpy(np.array(v)).to(self.checkpoint_dtype) for k, v in arrays.items()}
        write_safetensors(path, out, meta)

    def snapshots(self):
        """[(step, gamma, member, path)] of every snapshot in the folder."""
        out = []
        for fn in sorted(os.listdir(self.checkpoint_folder)):
            m = _SNAP.match(fn)
            if not m or m.group("member") == _STATE:
                continue
            p = os.path.join(self.checkpoint_folder, fn)
            with open_file(p) as f:
                meta = f.metadata
            if "ema.gamma" not in meta or "ema.t" not in meta:
                continue
            out.append((int(meta["ema.t"]), float(meta["ema.gamma"]), m.group("member"), p))
        return out

    def synthesize_state_dict(self, sigma_rel=None, gamma=None, step=None):
        """The power-function average of sigma_rel (or gamma) at step (None:
        the last snapshot), synthesised from the snapshots at or before it:
        (state_dict with the model's keys, posthoc.SolveInfo with the fit's
        residual and condition number). A tuple of sigma_rels gives a list
        of (state_dict, info)."""
        if isinstance(sigma_rel, (tuple, list)):
            return [self.synthesize_state_dict(sigma_rel=s, step=step) for s in sigma_rel]
        if isinstance(gamma, (tuple, list)):
            return [self.synthesize_state_dict(gamma=g, step=step) for g in gamma]
        if (sigma_rel is None) == (gamma is None):
            raise InvalidArgumentError("give exactly one of sigma_rel and gamma")
        snaps = self.snapshots()
        if not snaps:
            raise NotFoundError(f"no snapshots in {self.checkpoint_folder!r} yet (one every "
                                f"{self.checkpoint_every_num_steps} steps)")
        t_r = max(s[0] for s in snaps) if step is None else int(step)
        used = [s for s in snaps if s[0] <= t_r]
        coef, info = _posthoc.solve([s[0] for s in used], [s[1] for s in used], t_r=t_r,
                                    gamma_r=gamma, sigma_rel_r=sigma_rel)
        acc = {}
        for c, (_, _, _, p) in zip(coef, used):
            if c == 0.0:
                continue
            for k, v in read_safetensors(p).items():
                a = acc.get(k)
                acc[k] = c * v.astype(np.float64) if a is None else a + c * v.astype(np.float64)
        self.last_info = info
        return self._state_dict(acc, t_r), info

    def _state_dict(self, acc, t_r):
        e = self.ema
        states = [s for s in self.snapshot_states() if s[0] <= t_r]
        follow = read_safetensors(states[-1][1]) if states else {}
        by_id = {id(s.tensor): s for s in e._slots}
        out = {}
        for key, t in e.model.state_dict(keep_vars=True).items():
            s = by_id.get(id(t))
            if s is not None and s.name in acc:
                v = _plan.logical_view(torch.from_numpy(acc[s.name]), s.perm).to(s.dtype)
            elif s is not None and s.name in follow:
                v = _plan.logical_view(torch.from_numpy(np.array(follow[s.name])), s.perm).to(s.dtype)
            else:
                v = t.detach()
            out[_plan.canonical_name(key)] = v.clone()
        return out

    def snapshot_states(self):
        out = []
        for fn in sorted(os.listdir(self.checkpoint_folder)):
            m = _SNAP.match(fn)
            if m and m.group("member") == _STATE:
                out.append((int(m.group("step")), os.path.join(self.checkpoint_folder, fn)))
        return out

    def synthesize_ema_model(self, sigma_rel=None, gamma=None, step=None):
        """An eval-ready deep copy of the model holding the synthesised
        average (the fit's facts in self.last_info)."""
        sd, _ = self.synthesize_state_dict(sigma_rel=sigma_rel, gamma=gamma, step=step)
        m = copy.deepcopy(self.ema.model)
        m.requires_grad_(False)
        m.eval()
        _formats.load_into_module(m, sd)
        return m
