#!/usr/bin/python3
"""tests/tool/test_posthoc.py: `ema posthoc`, post-hoc EMA synthesis.

tool_fixture writes snapshots of two power-function EMAs (sigma_rel 0.05 with
ema.sigma_rel metadata, 0.10 with ema.gamma) every 100 steps of a simulated
run of 2000 steps, and reference averages tracked exactly in double. Then:

  - synthesising sigma_rel 0.10 at step 2000 (a width that was tracked)
    gives that track's final average back: coefficient 1 on its last
    snapshot, residual ~0, f32 within 1e-6 relative, f64 within 1e-12;
  - sigma_rel 0.07 (never tracked) is close to its exact reference, at the
    end and with --at-step 1000 (later snapshots get coefficient 0);
  - --gamma G gives the same as the equivalent --sigma-rel;
  - every float dtype comes back in its own dtype; the integer step tensor
    is copied from the latest snapshot used; the metadata records the
    target and the coefficients (which sum to 1);
  - hostile inputs fail clearly: one snapshot (usage), T before every
    snapshot, mismatched tensors (shape, dtype, missing, extra), missing or
    malformed metadata, identical snapshots, an ill-conditioned fit
    (--max-cond), bad flags.
"""
import glob
import json
import os

import toolcheck

np = toolcheck.need("numpy")
t = toolcheck.Context()
st_reader = toolcheck.need("st_reader")

snaps = t.path("snaps")
os.mkdir(snaps)
t.fixture("snapshots", snaps)
A = sorted(glob.glob(os.path.join(snaps, "a_*.safetensors")))
B = sorted(glob.glob(os.path.join(snaps, "b_*.safetensors")))
t.check(len(A) == 20 and len(B) == 20, "the fixture wrote 20 + 20 snapshots", (len(A), len(B)))
ALL = A + B
TOL = {"F64": 1e-12, "F32": 1e-6, "F16": 2e-3, "BF16": 1e-2}  # exact case: rounding of the dtype


def as_f64(sf, name):
    a = sf.array(name)
    if sf.tensors[name].dtype == "BF16":
        a = (a.astype(np.uint32) << 16).view(np.float32)
    return np.asarray(a, dtype=np.float64)


def compare(out, ref, approx, what):
    """Relative L2 error per tensor: the dtype's rounding (TOL) for a width
    that was tracked, max(TOL, approx) for a synthesised one."""
    got, want = st_reader.load(out), st_reader.load(os.path.join(snaps, ref))
    for n in ["w", "v", "h", "q"]:
        dt = st_reader.load(A[0]).tensors[n].dtype
        t.check(got.tensors[n].dtype == dt, "%s: %s keeps dtype %s" % (what, n, dt), got.tensors[n].dtype)
        a, b = as_f64(got, n), as_f64(want, n)
        err = np.linalg.norm(a - b) / np.linalg.norm(b)
        tol = max(TOL[dt], approx)
        t.check(err <= tol, "%s: %s (%s) within %g of the reference (%.3g)" % (what, n, dt, tol, err))
    t.check(got.raw("step") == want.raw("step"), "%s: integer step copied from the latest snapshot" % what,
            (got.array("step"), want.array("step")))
    return got


def synth(*args):
    out = t.path("out.safetensors")
    if os.path.exists(out):
        os.remove(out)
    return t.run("posthoc", *args, "-o", out), out


# a width that was tracked: exact
p, out = synth("--sigma-rel", "0.10", *ALL)
if t.expect(p, 0, "sigma_rel 0.10 (tracked)", stdout_has=["relative residual", "condition number", "wrote"]):
    got = compare(out, "ref_b_final.safetensors", 0, "sigma_rel 0.10")
    meta = got.metadata
    coef = json.loads(meta["ema.posthoc.coefficients"])
    t.check(len(coef) == 40 and abs(sum(coef) - 1) < 1e-12, "40 coefficients summing to 1", coef)
    t.check(abs(coef[-1] - 1) < 1e-9 and max(abs(c) for c in coef[:-1]) < 1e-9,
            "all the weight on the last sigma_rel 0.10 snapshot", coef)
    t.check(meta["ema.t"] == "2000" and float(meta["ema.sigma_rel"]) == 0.10, "metadata: target", meta)
    t.check(abs(float(meta["ema.gamma"]) - 6.9372039) < 1e-6, "metadata: gamma of sigma_rel 0.10", meta)
    t.check(float(meta["ema.posthoc.residual"]) < 1e-6, "residual ~0", meta)
    t.check(json.loads(meta["ema.posthoc.snapshot_t"])[:3] == [100, 200, 300], "metadata: snapshot steps")
    # coefficient 1 - 2e-15 on the last snapshot and ~1e-14 elsewhere: after rounding to the
    # tensor's dtype (nearest even), the output is that snapshot bit for bit
    last = st_reader.load(B[-1])
    for n in ["w", "h", "q"]:
        t.check(got.raw(n) == last.raw(n), "sigma_rel 0.10: %s (%s) equals the last snapshot bit for bit"
                % (n, last.tensors[n].dtype))

# the same target given as gamma
g = st_reader.load(B[0]).metadata["ema.gamma"]
p2, out2 = t.run("posthoc", "--gamma", g, *ALL, "-o", t.path("gamma.safetensors")), t.path("gamma.safetensors")
if t.expect(p2, 0, "--gamma"):
    t.check(st_reader.load(out2).raw("w") == st_reader.load(out).raw("w"), "--gamma G equals --sigma-rel 0.10")

# a width that was never tracked
p, out = synth("--sigma-rel", "0.07", *ALL)
if t.expect(p, 0, "sigma_rel 0.07 (synthesised)"):
    compare(out, "ref_c_final.safetensors", 1e-4, "sigma_rel 0.07 at 2000")
    t.check("+" in p.stdout and "-" in p.stdout, "coefficients printed", p.stdout[:500])

# at an earlier step: later snapshots are not used
p, out = synth("--sigma-rel", "0.07", "--at-step", "1000", *reversed(ALL))
if t.expect(p, 0, "--at-step 1000", stdout_has="- (after step 1000)"):
    got = compare(out, "ref_c_half.safetensors", 1e-3, "sigma_rel 0.07 at 1000")
    coef = json.loads(got.metadata["ema.posthoc.coefficients"])
    ts = json.loads(got.metadata["ema.posthoc.snapshot_t"])
    t.check(all(c == 0 for c, s in zip(coef, ts) if s > 1000), "snapshots after T get coefficient 0")
    t.check("from 20 of 40 snapshots" in p.stdout, "20 snapshots used", p.stdout[:300])

# hostile inputs
p, _ = synth("--sigma-rel", "0.1", B[-1])
t.expect_usage(p, "posthoc", "one snapshot", "at least 2 snapshots")
p, _ = synth("--sigma-rel", "0.1", "--at-step", "50", *ALL)
t.expect_failure(p, "T before every snapshot", "precedes every snapshot")
for bad, needle in [("bad_shape", "shape [256]"), ("bad_dtype", "F64"), ("bad_missing", "no tensor 'v'"),
                    ("bad_extra", "tensor 'z'"), ("bad_nometa", "ema.t"), ("bad_t", "'soon'")]:
    path = os.path.join(snaps, bad + ".safetensors")
    p, out = synth("--sigma-rel", "0.07", *(B + [path]))
    t.expect_failure(p, "mismatched snapshot " + bad, bad, needle)
    t.check(not os.path.exists(out), "%s: no output written" % bad)
p, _ = synth("--sigma-rel", "0.07", B[-1], B[-1])
t.expect_failure(p, "the same snapshot twice", "identical")
p, _ = synth("--sigma-rel", "0.07", "--max-cond", "10", *ALL)
t.expect_failure(p, "ill-conditioned beyond --max-cond", "condition")
p, _ = synth("--sigma-rel", "0.07", A[-1], t.path("missing.safetensors"))
t.expect_failure(p, "missing snapshot", "missing.safetensors")
with open(t.path("junk.safetensors"), "wb") as f:
    f.write(b"not a safetensors file at all")
p, _ = synth("--sigma-rel", "0.07", A[-1], t.path("junk.safetensors"))
t.expect_failure(p, "corrupt snapshot", "junk.safetensors")

for args, needle in [(["--sigma-rel", "0.5", A[-1], B[-1]], "--sigma-rel"),
                     (["--sigma-rel", "0", A[-1], B[-1]], "--sigma-rel"),
                     (["--sigma-rel", "x", A[-1], B[-1]], "--sigma-rel"),
                     (["--gamma", "-1", A[-1], B[-1]], "--gamma"),
                     (["--sigma-rel", "0.1", "--at-step", "0", A[-1], B[-1]], "--at-step"),
                     (["--sigma-rel", "0.1", "--max-cond", "0.5", A[-1], B[-1]], "--max-cond"),
                     ([A[-1], B[-1]], "missing the target")]:
    p, _ = synth(*args)
    t.expect_usage(p, "posthoc", "usage: " + " ".join(args[:2]), needle)
p = t.run("posthoc", "--sigma-rel", "0.1", A[-1], B[-1])
t.expect_usage(p, "posthoc", "no -o", "missing -o")

# several targets in one pass: each file equals the one a single-target call writes
outs = [t.path("multi_%d.safetensors" % j) for j in range(3)]
p = t.run("posthoc", "--sigma-rel", "0.07", "--sigma-rel", "0.10", "--gamma", "9", *ALL,
          "-o", outs[0], "-o", outs[1], "-o", outs[2])
if t.expect(p, 0, "three targets in one call", stdout_has=["wrote " + outs[2]]):
    for j, target in enumerate([["--sigma-rel", "0.07"], ["--sigma-rel", "0.10"], ["--gamma", "9"]]):
        single = t.path("single_%d.safetensors" % j)
        p1 = t.run("posthoc", *target, *ALL, "-o", single)
        if t.expect(p1, 0, "single target %s" % target):
            with open(outs[j], "rb") as a, open(single, "rb") as b:
                t.check(a.read() == b.read(), "target %s: one pass equals one at a time, byte for byte" % target)
p, _ = synth("--sigma-rel", "0.07", "--sigma-rel", "0.1", *ALL)
t.expect_usage(p, "posthoc", "two targets, one -o", "one -o per target")

# a step that is no snapshot's: refused, nothing written (it used to write a poor fit silently)
for step, needle in [("3000", "after the last snapshot"), ("1050", "no snapshot's step")]:
    p, out = synth("--sigma-rel", "0.07", "--at-step", step, *ALL)
    t.expect_failure(p, "--at-step %s" % step, needle)
    t.check(not os.path.exists(out), "--at-step %s: no output written" % step)

# a poor fit: refused by default, accepted with --max-residual inf
p, out = synth("--sigma-rel", "0.28", *ALL)
t.expect_failure(p, "a poor fit (sigma_rel 0.28)", "residual")
t.check(not os.path.exists(out), "poor fit: no output written")
p, out = synth("--sigma-rel", "0.28", "--max-residual", "inf", *ALL)
t.expect(p, 0, "--max-residual inf accepts it", stdout_has="relative residual")
p, _ = synth("--sigma-rel", "0.28", "--max-residual", "0", *ALL)
t.expect_usage(p, "posthoc", "--max-residual 0", "--max-residual")

# streaming: two targets from three 48 MiB snapshots in far less memory than the snapshots
import subprocess


def peak_mib(*args):
    """Peak RSS of one run of the tool, in MiB, as wait4 reports it (which counts
    the forked Python before the exec: compare with a baseline run)."""
    proc = subprocess.Popen([t.ema, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    return os.waitstatus_to_exitcode(status), usage.ru_maxrss / 1024.0, proc.stderr.read()


big = t.path("big")
os.mkdir(big)
t.fixture("bigsnaps", big, "48")
BIG = sorted(glob.glob(os.path.join(big, "big_*.safetensors")))
_, base, _ = peak_mib("--version")
code, peak, err = peak_mib("posthoc", "--sigma-rel", "0.07", "--sigma-rel", "0.09", "--max-residual", "inf", *BIG,
                           "-o", t.path("big_1.safetensors"), "-o", t.path("big_2.safetensors"))
t.check(code == 0, "two targets from 3 x 48 MiB snapshots", err)
t.check(os.path.getsize(t.path("big_2.safetensors")) > 48 << 20, "the outputs are whole")
t.check(peak - base < 24, "memory bounded by chunks, not by the 144 MiB of snapshots (%.1f MiB above the "
        "baseline %.1f)" % (peak - base, base))
print("posthoc, 2 targets from 3 x 48 MiB snapshots: peak RSS %.1f MiB, %.1f above a bare run" % (peak, peak - base))

t.done()
