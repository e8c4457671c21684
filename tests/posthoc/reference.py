#!/usr/bin/python3
# reference.py: compares src/posthoc (through posthoc_driver) with an
# independent numpy implementation of the same formulas (Karras et al. 2024,
# EDM2 appendix C / reference code: std_to_exp by numpy.roots on the cubic,
# inner products of power-function profiles, numpy.linalg.solve and
# numpy.linalg.cond) on random post-hoc setups.
#
# Usage: reference.py PATH/TO/posthoc_driver [--seed N] [--cases N] [-v]
# Exit status: 0 all agree, 1 a disagreement (each printed), 77 numpy is
# missing (ctest SKIP_RETURN_CODE), 2 usage or driver failure.
#
# Tolerances (eps = 2.2e-16 is the double-precision unit roundoff; all
# relative to the size of the quantity unless said otherwise):
#   gamma from sigma_rel ......... 1e-12 relative (numpy.roots itself is
#                                  only good to ~1e-14 here)
#   sigma_rel from gamma, decay,
#   inner products ............... 1e-13 relative (same closed forms; only
#                                  pow/sqrt rounding differs; the decay base
#                                  (t-dt)/t is formed exactly on both sides)
#   coefficients ................. max|x_c - x_np| <= (1e-12 + 64 n eps cond)
#                                  * max|x_np|: both solvers are backward
#                                  stable, so each has a forward error of
#                                  order n eps cond(A); the gammas they start
#                                  from differ by ~1e-15 too
#   condition number ............. |cond_c - cond_np| <= (1e-9 + 64 n eps
#                                  cond) * cond_np: the smallest eigenvalue
#                                  is known to about n eps lambda_max
#   residual (squared) ........... |r_c^2 - r_np^2| <= 1e-6 r_np^2 + 64 n eps
#                                  (sum|x|)^2 ||p||^2/||p_r||^2 scale: the
#                                  residual comes from x'Ax - 2x'b + <p_r,p_r>
#                                  which cancels; compared as squares, with
#                                  an absolute floor of that rounding
#   coefficient sum .............. like the coefficients
#   status ....................... the C code must refuse exactly when numpy
#                                  says it should (fewer than 2 usable
#                                  snapshots, target before all, identical
#                                  snapshots, cond > threshold); cases whose
#                                  numpy cond is within a factor 30 of the
#                                  threshold are not generated.

import subprocess
import sys

try:
    import numpy as np
except ImportError:
    print("SKIP: numpy is not installed for", sys.executable)
    sys.exit(77)

EPS = np.finfo(np.float64).eps / 2
DEFAULT_MAX_COND = 1e12
NORMALIZE = 1


# --- the formulas, written independently of the C code -------------------

def std_to_exp(std):
    """gamma for sigma_rel: largest real root of the EDM2 cubic."""
    k = float(std) ** -2
    return float(np.roots([1.0, 7.0, 16.0 - k, 12.0 - k]).real.max())


def exp_to_std(g):
    g = np.float64(g)
    return float(np.sqrt((g + 1) / (g + 2) ** 2 / (g + 3)))


def correlation(ta, ga, tb, gb):
    """<p_a, p_b>, vectorised by broadcasting (EDM2 eq. 151)."""
    ta, ga, tb, gb = (np.asarray(v, dtype=np.float64) for v in (ta, ga, tb, gb))
    e = np.where(ta < tb, gb, -ga)
    return (ga + 1) * (gb + 1) * (ta / tb) ** e / ((ga + gb + 1) * np.maximum(ta, tb))


def solve(t, sig, t_r, sig_r, max_cond, flags):
    """numpy answer: ('err', why) or ('ok', used, x, residual, cond, sum)."""
    t = np.asarray(t, dtype=np.float64)
    g = np.array([std_to_exp(s) for s in sig])
    g_r = std_to_exp(sig_r)
    used = t <= t_r
    m = int(used.sum())
    if m == 0:
        return ("err", "before all")
    if m < 2:
        return ("err", "one usable")
    tu, gu = t[used], g[used]
    pairs = set()
    for a, b in zip(tu, gu):
        if (a, b) in pairs:
            return ("err", "duplicate")
        pairs.add((a, b))
    A = correlation(tu[:, None], gu[:, None], tu[None, :], gu[None, :])
    b = correlation(tu, gu, t_r, g_r)
    cond = float(np.linalg.cond(A))
    limit = DEFAULT_MAX_COND if max_cond == 0 else max_cond
    if not cond <= limit:
        return ("err", "cond", cond)
    x = np.linalg.solve(A, b)
    total = float(x.sum())
    if flags & NORMALIZE:
        x = x / total
    c = float(correlation(t_r, g_r, t_r, g_r))
    rr = float(x @ A @ x - 2 * x @ b + c)
    xs = np.zeros(len(t))
    xs[used] = x
    scale = float(np.abs(x).sum() ** 2 * np.abs(A).max() / c)
    return ("ok", m, xs, rr / c, cond, total, scale)


# --- random setups ----------------------------------------------------------

def edm2_case(rng):
    s1, s2 = sorted(rng.uniform(0.03, 0.15, 2))
    n = int(rng.integers(2, 160))
    step = int(rng.integers(1, 5000))
    ts = step * np.arange(1, n + 1, dtype=np.float64)
    t = np.repeat(ts, 2)
    sig = np.tile([s1, s2], n)
    pick = rng.integers(0, 3)
    if pick == 0:
        t_r = ts[-1]
    elif pick == 1:
        t_r = ts[int(rng.integers(1, n))]
    else:
        t_r = float(rng.uniform(ts[1], ts[-1] * 1.2))
    return t, sig, t_r, float(rng.uniform(0.02, 0.25))


def random_case(rng):
    k = int(rng.integers(1, 6))
    sigmas = rng.uniform(0.01, 0.28, k)
    n = int(rng.integers(2, 80))
    t = rng.integers(1, 10 ** 7, n).astype(np.float64)
    sig = rng.choice(sigmas, n)
    keep = {}
    for a, s in zip(t, sig):
        keep[(a, s)] = True
    t = np.array([a for a, _ in keep])
    sig = np.array([s for _, s in keep])
    t_r = float(t.max()) if rng.random() < 0.5 else float(np.quantile(t, rng.uniform(0.3, 1.0)))
    return t, sig, t_r, float(rng.uniform(0.01, 0.28))


def error_cases(rng):
    out = []
    t = np.array([100.0, 200, 300, 100, 200, 300])
    sig = np.array([0.05, 0.05, 0.05, 0.10, 0.10, 0.10])
    out.append((t, sig, 50.0, 0.07, 0.0, 0))            # target before all
    out.append((t[:1], sig[:1], 100.0, 0.07, 0.0, 0))   # single snapshot
    out.append((t, sig, 150.0, 0.07, 0.0, 0))           # one usable
    td = np.array([100.0, 200, 200, 300])
    out.append((td, np.full(4, 0.08), 300.0, 0.07, 0.0, 0))  # duplicate
    td = np.array([100.0, 200, 200 * (1 + 1e-14), 300])
    out.append((td, np.full(4, 0.08), 300.0, 0.07, 0.0, 0))  # near duplicate
    out.append((t, sig, 300.0, 0.07, 3.0, 0))           # tight threshold
    return out


# --- driver -------------------------------------------------------------------

def fmt(v):
    return repr(float(v))


def main(argv):
    args = [a for a in argv[1:]]
    verbose = "-v" in args
    args = [a for a in args if a != "-v"]
    seed, ncases = 20240607, 60
    if "--seed" in args:
        i = args.index("--seed")
        seed = int(args[i + 1])
        del args[i:i + 2]
    if "--cases" in args:
        i = args.index("--cases")
        ncases = int(args[i + 1])
        del args[i:i + 2]
    if len(args) != 1:
        print(__doc__ if __doc__ else "usage: reference.py DRIVER [--seed N] [--cases N] [-v]")
        return 2
    driver = args[0]
    rng = np.random.default_rng(seed)

    requests, expects = [], []
    # Scalar functions.
    for s in np.concatenate([rng.uniform(0.005, 0.2886, 40), [0.05, 0.07, 0.10, 0.2886]]):
        requests.append("gamma " + fmt(s))
        expects.append(("gamma", float(s)))
    for g in np.concatenate([rng.uniform(-0.99, 50, 30), 10 ** rng.uniform(-3, 6, 10)]):
        requests.append("sigma " + fmt(g))
        expects.append(("sigma", float(g)))
    for _ in range(30):
        g = float(rng.uniform(-0.9, 40))
        t = int(rng.integers(1, 10 ** 9))
        dt = int(rng.integers(1, t + 1)) if rng.random() < 0.3 else int(rng.integers(1, min(t, 64) + 1))
        requests.append("decay %s %d %d" % (fmt(g), t, dt))
        expects.append(("decay", g, t, dt))
    for _ in range(40):
        ta, tb = 10 ** rng.uniform(-3, 9, 2)
        if rng.random() < 0.2:
            tb = ta
        ga, gb = rng.uniform(-0.45, 60, 2)
        requests.append("inner %s %s %s %s" % (fmt(ta), fmt(ga), fmt(tb), fmt(gb)))
        expects.append(("inner", ta, ga, tb, gb))

    # Solver cases: random setups, then the hostile ones.
    setups = []
    while len(setups) < ncases:
        t, sig, t_r, sig_r = edm2_case(rng) if len(setups) % 2 == 0 else random_case(rng)
        flags = NORMALIZE if rng.random() < 0.3 else 0
        ref = solve(t, sig, t_r, sig_r, 0.0, flags)
        cond = ref[4] if ref[0] == "ok" else (ref[2] if ref[1] == "cond" else None)
        if cond is not None and DEFAULT_MAX_COND / 30 < cond < DEFAULT_MAX_COND * 30:
            continue  # too close to the threshold to expect the same verdict
        max_cond = 0.0
        if cond is not None and rng.random() < 0.15:
            max_cond = cond / 30 if rng.random() < 0.5 else cond * 30
        setups.append((t, sig, t_r, sig_r, max_cond, flags))
    setups.extend(error_cases(rng))
    for t, sig, t_r, sig_r, max_cond, flags in setups:
        body = " ".join(fmt(a) + " " + fmt(s) for a, s in zip(t, sig))
        requests.append("solve %d %s %s %s %d %s" % (flags, fmt(max_cond), fmt(t_r), fmt(sig_r),
                                                     len(t), body))
        expects.append(("solve", t, sig, t_r, sig_r, max_cond, flags))

    proc = subprocess.run([driver], input="\n".join(requests) + "\n", capture_output=True,
                          text=True, timeout=600)
    if proc.returncode != 0:
        print("driver failed with status", proc.returncode, proc.stderr)
        return 2
    lines = proc.stdout.splitlines()
    if len(lines) != len(requests):
        print("driver answered %d of %d requests" % (len(lines), len(requests)))
        return 2

    failures = 0
    worst = {}

    def note(kind, ratio):
        worst[kind] = max(worst.get(kind, 0.0), ratio)

    def fail(msg):
        nonlocal failures
        failures += 1
        print("MISMATCH:", msg)

    stats = {"ok": 0, "refused": 0}
    for line, exp in zip(lines, expects):
        f = line.split()
        kind = exp[0]
        if f[0] != kind:
            fail("answer %r to a %s request" % (line[:60], kind))
            continue
        status = int(f[1])
        if kind in ("gamma", "sigma", "decay", "inner"):
            if kind == "gamma":
                want, tol = std_to_exp(exp[1]), 1e-12
            elif kind == "sigma":
                want, tol = exp_to_std(exp[1]), 1e-13
            elif kind == "decay":
                _, g, t, dt = exp
                # (t - dt) / t with the subtraction exact in Python integers:
                # 1 - dt/t would lose digits when dt is close to t.
                want, tol = ((t - dt) / t) ** (g + 1.0), 1e-13
            else:
                want, tol = float(correlation(*exp[1:])), 1e-13
            got = float(f[2])
            if status != 0:
                fail("%s %r refused (status %d)" % (kind, exp[1:], status))
                continue
            rel = abs(got - want) / max(abs(want), 1e-300)
            note(kind, rel / tol)
            if rel > tol:
                fail("%s %r: C %r numpy %r (relative %.2e > %.0e)" % (kind, exp[1:], got, want,
                                                                       rel, tol))
            continue
        _, t, sig, t_r, sig_r, max_cond, flags = exp
        ref = solve(t, sig, t_r, sig_r, max_cond, flags)
        tag = "solve (n %d, t_r %g, sigma_r %.4f, flags %d, max_cond %g)" % (len(t), t_r, sig_r,
                                                                           flags, max_cond)
        if ref[0] == "err":
            stats["refused"] += 1
            if status != 1:
                fail("%s: numpy refuses (%s) but C answered %r" % (tag, ref[1], line[:120]))
            elif verbose:
                print("refused as expected (%s): %s" % (ref[1], " ".join(f[2:])))
            continue
        if status != 0:
            fail("%s: C refused: %s (numpy cond %.3e)" % (tag, " ".join(f[2:]), ref[4]))
            continue
        stats["ok"] += 1
        _, m, x_np, rr_np, cond_np, sum_np, scale = ref
        n_used, res_c, cond_c, sum_c, n = int(f[2]), float(f[3]), float(f[4]), float(f[5]), int(f[6])
        x_c = np.array([float(v) for v in f[7:7 + n]])
        if n_used != m:
            fail("%s: C used %d snapshots, numpy %d" % (tag, n_used, m))
        unused = np.asarray(t) > t_r
        if np.any(x_c[unused] != 0.0):
            fail("%s: nonzero coefficient on a snapshot after t_r" % tag)
        tol_x = 1e-12 + 64 * m * EPS * cond_np
        err_x = float(np.abs(x_c - x_np).max() / np.abs(x_np).max())
        note("coefficients", err_x / tol_x)
        if err_x > tol_x:
            fail("%s: coefficients differ by %.2e (tolerance %.2e, cond %.2e)" % (tag, err_x, tol_x,
                                                                                  cond_np))
        err_s = abs(sum_c - sum_np) / abs(sum_np)
        note("coef_sum", err_s / tol_x)
        if err_s > tol_x:
            fail("%s: coefficient sums %r vs %r" % (tag, sum_c, sum_np))
        tol_c = 1e-9 + 64 * m * EPS * cond_np
        err_c = abs(cond_c - cond_np) / cond_np
        note("cond", err_c / tol_c)
        if err_c > tol_c:
            fail("%s: cond %.6e vs numpy %.6e (relative %.2e > %.2e)" % (tag, cond_c, cond_np, err_c,
                                                                       tol_c))
        tol_r = 1e-6 * max(rr_np, 0.0) + 64 * m * EPS * scale
        err_r = abs(res_c * res_c - max(rr_np, 0.0))
        note("residual^2", err_r / tol_r)
        if err_r > tol_r:
            fail("%s: residual %.6e vs numpy %.6e" % (tag, res_c, np.sqrt(max(rr_np, 0.0))))
        if verbose:
            print("%s: residual %.3e cond %.3e |dx| %.1e" % (tag, res_c, cond_c, err_x))

    print("posthoc vs numpy: %d requests, %d solves compared, %d refusals matched, %d mismatches"
          % (len(requests), stats["ok"], stats["refused"], failures))
    print("worst error / tolerance: " + ", ".join("%s %.3g" % kv for kv in sorted(worst.items())))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
