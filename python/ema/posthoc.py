"""Power-function EMA and post-hoc EMA synthesis (Karras et al. 2024, EDM2):
thin wrappers over ema_power_* and ema_posthoc_solve (all double precision,
documented in include/ema/ema.h).

    gamma = posthoc.sigma_rel_to_gamma(0.10)        # 6.937...
    coef, info = posthoc.solve(t, gammas, t_r=t[-1], sigma_rel_r=0.07)
    average = sum(c * s for c, s in zip(coef, snapshots))
"""
import ctypes
from collections import namedtuple

import numpy as np

from . import _lib
from .errors import InvalidArgumentError

__all__ = ["SIGMA_REL_MAX", "DEFAULT_MAX_COND", "sigma_rel_to_gamma", "gamma_to_sigma_rel",
           "power_decay", "inner", "solve", "SolveInfo"]

_lib_ = _lib.lib

SIGMA_REL_MAX = 0.28867513459481287  # EMA_POWER_SIGMA_REL_MAX = sqrt(1/12)
DEFAULT_MAX_COND = 1e12              # EMA_POSTHOC_DEFAULT_MAX_COND
_NORMALIZE = 1

SolveInfo = namedtuple("SolveInfo", "n_used residual cond coef_sum")
SolveInfo.__doc__ = """Facts about a fit: snapshots used (t <= t_r), relative L2
residual of the profile fit (0 perfect; below ~1e-7 means exact), condition
number of the Gram matrix, sum of the coefficients before normalisation."""


def _one(fn, *args, what):
    out = ctypes.c_double()
    st = fn(*args, ctypes.byref(out))
    if st != 0:
        raise InvalidArgumentError(f"{what}: argument out of range {args!r}", st)
    return out.value


def sigma_rel_to_gamma(sigma_rel):
    """gamma of the power-function profile of relative width sigma_rel, in
    (0, SIGMA_REL_MAX]. 0.05 -> 16.97..., 0.10 -> 6.937..."""
    return _one(_lib_.ema_power_gamma, float(sigma_rel),
                what="sigma_rel_to_gamma (sigma_rel must be in (0, sqrt(1/12)])")


def gamma_to_sigma_rel(gamma):
    """sigma_rel of the power-function profile of exponent gamma (> -1)."""
    return _one(_lib_.ema_power_sigma_rel, float(gamma), what="gamma_to_sigma_rel (gamma must be > -1)")


def power_decay(gamma, t, dt=1):
    """Decay of the power-function EMA update that covers steps (t-dt, t]:
    (1 - dt/t)^(gamma+1). t counts from 1; 1 <= dt <= t."""
    return _one(_lib_.ema_power_decay, float(gamma), int(t), int(dt),
                what="power_decay (gamma > -1, t >= 1, 1 <= dt <= t)")


def inner(t_a, gamma_a, t_b, gamma_b):
    """<p_a, p_b>, the L2 inner product of two power-function profiles."""
    return _one(_lib_.ema_power_inner, float(t_a), float(gamma_a), float(t_b), float(gamma_b),
                what="inner (times > 0, gammas > -1, gamma_a + gamma_b > -1)")


def solve(t, gamma, t_r, gamma_r=None, *, sigma_rel_r=None, max_cond=None, normalize=True):
    """Coefficients that synthesise the power-function EMA (gamma_r, or
    sigma_rel_r) at time t_r from snapshots i taken at t[i] with exponent
    gamma[i] (a scalar gamma applies to every snapshot).

    Returns (coef, info): coef a float64 array, one coefficient per
    snapshot (0 for those after t_r); info a SolveInfo. normalize=True
    rescales the coefficients to sum to 1 (EDM2's practice). max_cond: the
    refusal threshold on the Gram matrix's condition number (None: 1e12).
    Raises InvalidArgumentError (ValueError) with the library's sentence."""
    if (gamma_r is None) == (sigma_rel_r is None):
        raise InvalidArgumentError("give exactly one of gamma_r and sigma_rel_r")
    if gamma_r is None:
        gamma_r = sigma_rel_to_gamma(sigma_rel_r)
    t = np.ascontiguousarray(t, dtype=np.float64).reshape(-1)
    g = np.ascontiguousarray(np.broadcast_to(np.asarray(gamma, dtype=np.float64), t.shape))
    n = t.size
    coef = np.zeros(n, dtype=np.float64)
    info = _lib.PosthocInfo()
    err = _lib.errbuf()
    dp = ctypes.POINTER(ctypes.c_double)
    st = _lib_.ema_posthoc_solve(
        n, t.ctypes.data_as(dp), g.ctypes.data_as(dp), float(t_r), float(gamma_r),
        0.0 if max_cond is None else float(max_cond), _NORMALIZE if normalize else 0,
        coef.ctypes.data_as(dp), ctypes.byref(info), err, _lib.ERRCAP)
    if st != 0:
        _lib.raise_for(st, _lib.errtext(err))
    return coef, SolveInfo(int(info.n_used), info.residual, info.cond, info.coef_sum)
