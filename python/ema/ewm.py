"""Exponentially weighted mean of a series with pandas' semantics
(ema_ewm_mean in include/ema/ema.h): ema.ewm_mean(x, span=20) gives what
pandas.Series(x).ewm(span=20).mean() gives, as a float64 numpy array.
"""
import ctypes

import numpy as np

from . import _lib
from .errors import InvalidArgumentError

__all__ = ["ewm_mean"]

_lib_ = _lib.lib
_KINDS = (("com", 0), ("span", 1), ("halflife", 2), ("alpha", 3))


def _ns(a):
    a = np.asarray(a)
    if np.issubdtype(a.dtype, np.datetime64):
        return a.astype("datetime64[ns]").astype(np.int64).astype(np.float64)
    if np.issubdtype(a.dtype, np.timedelta64):
        return a.astype("timedelta64[ns]").astype(np.int64).astype(np.float64)
    return a.astype(np.float64)


def ewm_mean(x, *, com=None, span=None, halflife=None, alpha=None, adjust=True, ignore_na=False,
             min_periods=0, times=None):
    """pandas' Series.ewm(...).mean() of x (any array-like of numbers; NaN
    and infinities are missing values). Exactly one of com, span, halflife,
    alpha. times: time stamps (numbers, or numpy datetime64, taken in
    nanoseconds as pandas does) with halflife in the same unit (a number, or
    a numpy timedelta64). Raises ValueError with pandas' wording for bad
    parameters. Returns a new float64 array."""
    given = [(k, v) for (name, k), v in zip(_KINDS, (com, span, halflife, alpha)) if v is not None]
    if len(given) != 1:
        raise InvalidArgumentError(
            "Must pass one of com, span, halflife, or alpha" if not given
            else "comass, span, halflife, and alpha are mutually exclusive")
    kind, value = given[0]
    opts = _lib.EwmOpts()
    _lib_.ema_ewm_opts_init(ctypes.byref(opts))
    opts.kind = kind
    opts.value = float(_ns(value)) if kind == 2 and times is not None else float(value)
    opts.adjust = int(bool(adjust))
    opts.ignore_na = int(bool(ignore_na))
    if int(min_periods) < 0:
        raise InvalidArgumentError("min_periods must be >= 0")
    opts.min_periods = int(min_periods)
    xs = np.ascontiguousarray(x, dtype=np.float64).reshape(-1)
    ts = None
    dp = ctypes.POINTER(ctypes.c_double)
    if times is not None:
        ts = np.ascontiguousarray(_ns(times)).reshape(-1)
        if ts.size != xs.size:
            raise InvalidArgumentError(f"times has {ts.size} entries but x has {xs.size}")
    out = np.empty_like(xs)
    err = _lib.errbuf()
    st = _lib_.ema_ewm_mean(ctypes.byref(opts), xs.ctypes.data_as(dp), xs.size,
                            None if ts is None else ts.ctypes.data_as(dp), out.ctypes.data_as(dp),
                            err, _lib.ERRCAP)
    if st != 0:
        _lib.raise_for(st, _lib.errtext(err))
    return out
