#!/usr/bin/python3
"""tests/tool/test_inspect_scale.py: `ema inspect` is linear in the number of
tensors (issue 11, item 4: it was quadratic, 3.7 s for 20,000 tensors).

tool_fixture writes checkpoints of 20,000 and 200,000 tensors (each model
tensor with its average). Both are inspected (text and --json); the larger
must take less than 40 times the smaller (linear: about 10; the old
quadratic search: about 100) and less than 60 s (it takes about 0.6 s on
one core of a 2020 laptop); the output must name every tensor.
"""
import time

import toolcheck

t = toolcheck.Context()


def timed(n_pairs, *flags):
    path = t.path("many_%d.safetensors" % n_pairs)
    t.fixture("many", str(n_pairs), path)
    best = None
    for _ in range(2):  # the better of two runs: a busy machine slows one
        start = time.monotonic()
        p = t.run("inspect", *flags, path, timeout=600)
        spent = time.monotonic() - start
        best = spent if best is None else min(best, spent)
    return p, best


for flags in [(), ("--json",)]:
    small, t_small = timed(10000, *flags)
    large, t_large = timed(100000, *flags)
    what = "inspect %s" % (" ".join(flags) or "(text)")
    if t.expect(small, 0, what + " of 20,000 tensors") and t.expect(large, 0, what + " of 200,000 tensors"):
        t.check("layer.99999.weight/ExponentialMovingAverage" in large.stdout, what + ": the last average listed")
        t.check(large.stdout.count("layer.") >= 200000, what + ": every tensor listed")
    ratio = t_large / max(t_small, 0.02)
    print("%s: 20,000 tensors %.3f s, 200,000 tensors %.3f s (ratio %.1f)" % (what, t_small, t_large, ratio))
    t.check(ratio < 40, what + ": linear in the number of tensors", "ratio %.1f" % ratio)
    t.check(t_large < 60, what + ": 200,000 tensors within 60 s", "%.1f s" % t_large)

t.done()
