#!/usr/bin/python3
"""tests/series/pandas_conformance.py: compare libema's ema_ewm_mean() with
pandas' Series.ewm(...).mean() over thousands of random cases.

Random series (NaN runs, leading NaN, all NaN, infinities, constant runs,
lengths 0 and 1, random time stamps with repeats) go through pandas for every
combination of decay kind and value, adjust, ignore_na and min_periods, and
through the C program tests/series/ewm_filter.c; results must agree within
1e-12 relative to the scale of the data seen so far (in practice they are
bit-identical except where numpy's and the C library's exp/log differ in the
last bit). Parameters pandas refuses must be refused by the C side as well.

Usage: pandas_conformance.py PATH/TO/ewm_filter [--seed N] [--series N]
Exit 0: all agree; 1: a mismatch (the first few are printed); 77: pandas or
numpy missing (ctest SKIP_RETURN_CODE).
"""
import argparse
import math
import subprocess
import sys
import warnings

try:
    import numpy as np
    import pandas as pd
except ImportError as e:  # the Debian packages are not installed
    print(f"SKIP: pandas/numpy not importable ({e})")
    sys.exit(77)

TOL = 1e-12
KIND = {"com": 0, "span": 1, "halflife": 2, "alpha": 3}
EMA_E_INVALID_ARG = 1


def hexf(v):
    v = float(v)
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return v.hex()


def random_series(rng, n):
    """Values with a random scale and missing-value pattern."""
    style = rng.randint(6)
    scale = 10.0 ** rng.uniform(-3, 6)
    if style == 0:
        x = rng.normal(rng.uniform(-5, 5) * scale, scale, n)
    elif style == 1:  # small integers: many values equal the running mean
        x = rng.randint(-3, 4, n).astype(np.float64)
    elif style == 2:  # constant runs
        x = np.repeat(rng.normal(0, scale, max(n // 4, 1)), 4)[:n]
        if len(x) < n:
            x = np.concatenate([x, np.full(n - len(x), 1.5)])
    elif style == 3:  # a seasonal temperature-like signal
        d = np.arange(n)
        x = 11 - 7 * np.cos(2 * np.pi * (d - 15) / 365) + rng.normal(0, 2.5, n)
    elif style == 4:  # huge magnitudes: overflow paths must agree too
        x = rng.normal(0, 1, n) * 10.0 ** rng.choice([100, 300, 307])
    else:
        x = rng.uniform(-1, 1, n) * scale
    x = np.asarray(x, dtype=np.float64)
    if n == 0:
        return x
    pattern = rng.randint(7)
    if pattern == 1:  # scattered NaN
        x[rng.uniform(size=n) < rng.uniform(0.05, 0.6)] = np.nan
    elif pattern == 2:  # NaN runs
        for _ in range(rng.randint(1, 4)):
            a = rng.randint(n)
            x[a:a + rng.randint(1, 10)] = np.nan
    elif pattern == 3:  # leading NaN
        x[:rng.randint(1, n + 1)] = np.nan
    elif pattern == 4:  # all NaN
        x[:] = np.nan
    elif pattern == 5:  # infinities (pandas treats them as NaN) and NaN
        x[rng.uniform(size=n) < 0.1] = np.inf
        x[rng.uniform(size=n) < 0.1] = -np.inf
        x[rng.uniform(size=n) < 0.1] = np.nan
    elif pattern == 6:  # trailing NaN
        x[n - rng.randint(1, n + 1):] = np.nan
    return x


def random_times(rng, n):
    """datetime64[ns] stamps, non-decreasing, with repeats; random unit."""
    unit = int(rng.choice([1, 1_000, 1_000_000_000, 86_400_000_000_000]))
    steps = rng.randint(0, 5, n).astype(np.int64) * unit
    steps[rng.uniform(size=n) < 0.2] = 0  # repeated stamps
    if rng.randint(2):
        steps += rng.randint(0, 1000, n).astype(np.int64)  # non-round gaps
    start = int(rng.choice([0, 1_577_836_800_000_000_000, rng.randint(1 << 40)]))
    ns = start + np.cumsum(steps)
    return pd.DatetimeIndex(ns.astype("datetime64[ns]")), unit


def decay_values(rng):
    return {
        "com": [0.0, 0.5, rng.uniform(0, 30), math.inf],
        "span": [1.0, 2.5, rng.uniform(1, 60)],
        "halflife": [1.0, rng.uniform(0.05, 40)],
        "alpha": [1.0, 1 - 0.5, 1 - 0.9, 1 - 0.98, rng.uniform(1e-3, 1)],
    }


def pandas_mean(x, kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with np.errstate(all="ignore"):
            return pd.Series(x, dtype=np.float64).ewm(**kw).mean().to_numpy()


def build_cases(rng, n_series):
    cases = []  # (kind, value, adjust, ignore_na, minp, x, times_f64, expected|None)
    lengths = [0, 1, 1, 2, 3] + [int(v) for v in rng.randint(4, 80, n_series)]
    lengths[5:8] = [500, 1000, 365]
    for n in lengths:
        x = random_series(rng, n)
        minps = sorted({0, 1, 3, int(rng.randint(0, n + 2))})
        for kind, values in decay_values(rng).items():
            for value in values:
                for adjust in (True, False):
                    for ignore_na in (False, True):
                        for minp in minps:
                            kw = {kind: value, "adjust": adjust, "ignore_na": ignore_na,
                                  "min_periods": minp}
                            cases.append((kind, value, adjust, ignore_na, minp, x, None,
                                          pandas_mean(x, kw)))
    # time-based half-life (pandas: adjust=True only)
    for n in [0, 1, 2, 5] + [int(v) for v in rng.randint(3, 120, n_series // 2)] + [700]:
        x = random_series(rng, n)
        times, unit = random_times(rng, n)
        # pandas divides the float64 of the int64 nanoseconds by the half-life
        t64 = np.asarray(times.view(np.int64), dtype=np.float64)
        for hl_units in [1.0, 0.37, rng.uniform(0.01, 20)]:
            hl_ns = max(int(hl_units * unit), 1)
            hl = pd.Timedelta(hl_ns, unit="ns")
            for ignore_na in (False, True):
                for minp in sorted({0, 2, int(rng.randint(0, n + 2))}):
                    kw = {"halflife": hl, "times": times, "ignore_na": ignore_na,
                          "min_periods": minp}
                    cases.append(("halflife", float(hl.value), True, ignore_na, minp, x, t64,
                                  pandas_mean(x, kw)))
    return cases


def invalid_cases():
    """Parameters pandas refuses with ValueError: the C side must refuse too."""
    x = np.array([1.0, 2.0, np.nan, 4.0])
    out = []
    for kind, value in [("com", -0.5), ("com", -1e-9), ("span", 0.5), ("span", -2.0),
                        ("span", 0.999999), ("halflife", 0.0), ("halflife", -1.0),
                        ("alpha", 0.0), ("alpha", -0.1), ("alpha", 1.5),
                        ("alpha", 1.0000000001)]:
        try:
            pandas_mean(x, {kind: value})
        except ValueError:
            out.append((kind, value, True, False, 0, x, None, None))
        else:
            raise SystemExit(f"pandas accepted {kind}={value}; this test's premise is wrong")
    # times with adjust=False (pandas: NotImplementedError) and times with a
    # plain float half-life (pandas: ValueError)
    times = pd.DatetimeIndex(np.array([0, 1, 2, 3], dtype="datetime64[ns]"))
    for kw in [{"halflife": pd.Timedelta(1), "times": times, "adjust": False},
               {"halflife": 1.0, "times": times}]:
        try:
            pandas_mean(x, kw)
        except (ValueError, NotImplementedError):
            pass
        else:
            raise SystemExit(f"pandas accepted {kw}; this test's premise is wrong")
    t64 = np.arange(4, dtype=np.float64)
    out.append(("halflife", 1.0, False, False, 0, x, t64, None))
    out.append(("alpha", 0.5, True, False, 0, x, t64, None))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("filter", help="path of the ewm_filter program")
    ap.add_argument("--seed", type=int, default=20240601)
    ap.add_argument("--series", type=int, default=120,
                    help="number of random series of random length")
    args = ap.parse_args()

    rng = np.random.RandomState(args.seed)
    cases = build_cases(rng, args.series) + invalid_cases()

    lines = []
    for i, (kind, value, adjust, ignore_na, minp, x, t64, _) in enumerate(cases):
        lines.append(f"case {i} {KIND[kind]} {hexf(value)} {int(adjust)} {int(ignore_na)} "
                     f"{minp} {int(t64 is not None)} {len(x)}")
        lines.append(" ".join(hexf(v) for v in x))
        if t64 is not None:
            lines.append(" ".join(hexf(v) for v in t64))
    proc = subprocess.run([args.filter], input="\n".join(lines) + "\n", capture_output=True,
                          text=True, check=False)
    if proc.returncode != 0:
        print(f"FAIL: {args.filter} exited {proc.returncode}: {proc.stderr.strip()}")
        return 1
    results = proc.stdout.splitlines()
    if len(results) != len(cases):
        print(f"FAIL: {len(cases)} cases sent, {len(results)} results back")
        return 1

    failures = []
    n_values = n_identical = 0
    differing = {}  # decay form -> values not bit-identical
    max_scaled = 0.0  # |c - pandas| / max(|pandas|, max |x| seen so far)
    max_rel = 0.0     # |c - pandas| / |pandas|, over pandas != 0
    for i, (line, case) in enumerate(zip(results, cases)):
        kind, value, adjust, ignore_na, minp, x, t64, want = case
        fields = line.split()
        desc = (f"case {i}: {kind}={value!r} adjust={adjust} ignore_na={ignore_na} "
                f"min_periods={minp} times={t64 is not None} n={len(x)}")
        if int(fields[0]) != i:
            failures.append(f"{desc}: result line {i} is for case {fields[0]}")
            continue
        status = int(fields[1])
        if want is None:
            if status != EMA_E_INVALID_ARG:
                failures.append(f"{desc}: pandas refuses it, C returned status {status}")
            continue
        if status != 0:
            failures.append(f"{desc}: C returned status {status}"
                            + (" (stream differs from batch)" if status == 99 else ""))
            continue
        got = np.array([float.fromhex(v) for v in fields[2:]], dtype=np.float64)
        if len(got) != len(want):
            failures.append(f"{desc}: {len(got)} values back, want {len(want)}")
            continue
        finite = np.where(np.isfinite(x), np.abs(x), 0.0)
        seen = np.maximum.accumulate(finite) if len(x) else finite
        for j in range(len(want)):
            g, w = got[j], want[j]
            n_values += 1
            if (math.isnan(g) and math.isnan(w)) or g == w:
                n_identical += 1
                continue
            form = kind + (" with times" if t64 is not None else "")
            differing[form] = differing.get(form, 0) + 1
            if not (math.isfinite(g) and math.isfinite(w)):
                failures.append(f"{desc}: [{j}] C {g!r} pandas {w!r}")
                continue
            diff = abs(g - w)
            scale = max(abs(w), seen[j])
            max_scaled = max(max_scaled, diff / scale)
            if w != 0:
                max_rel = max(max_rel, diff / abs(w))
            if diff > TOL * scale:
                failures.append(f"{desc}: [{j}] C {g!r} pandas {w!r} (rel {diff / scale:.3g})")

    n_invalid = sum(1 for c in cases if c[7] is None)
    print(f"pandas {pd.__version__}, numpy {np.__version__}, seed {args.seed}: "
          f"{len(cases)} cases ({n_invalid} refused by both), {n_values} values, "
          f"{n_identical} bit-identical; max deviation {max_scaled:.3g} relative to the data "
          f"scale, {max_rel:.3g} relative to the value; tolerance {TOL:g}")
    if differing:
        print("values not bit-identical, by decay form: "
              + ", ".join(f"{k}: {v}" for k, v in sorted(differing.items()))
              + " (halflife: numpy's exp differs from the C library's by 1 ulp)")
    if failures:
        print(f"FAIL: {len(failures)} mismatches; first ones:")
        for f in failures[:20]:
            print("  " + f)
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
