#!/usr/bin/python3
"""tests/tool/test_bench.py: `ema bench` runs bench_apply with its arguments.

The tool finds bench_apply through $EMA_BENCH_APPLY, next to itself, or in
its build tree, passes every argument through and returns its exit status;
a bad $EMA_BENCH_APPLY is a clear failure. The speed itself is not tested
(bench/RESULTS.md is where numbers live).
"""
import os
import stat

import toolcheck

t = toolcheck.Context()

p = t.run("bench", "--help")
t.expect(p, 0, "bench --help is ema's help", stdout_has=["Usage: ema bench", "bench_apply"])

# a stand-in benchmark that reports its arguments
fake = t.path("fake_bench")
with open(fake, "w") as f:
    f.write("#!/bin/sh\necho \"fake bench_apply: $*\"\nexit 3\n")
os.chmod(fake, os.stat(fake).st_mode | stat.S_IXUSR)
p = t.run("bench", "--quick", "--threads", "1,2", "with space", env={"EMA_BENCH_APPLY": fake})
t.expect(p, 3, "arguments passed through, exit status returned", stdout_has="fake bench_apply: --quick --threads 1,2 with space")
p = t.run("bench", "--", "--help", env={"EMA_BENCH_APPLY": fake})
t.expect(p, 3, "'--' passes --help to bench_apply", stdout_has="fake bench_apply: --help")

p = t.run("bench", env={"EMA_BENCH_APPLY": t.path("no-such-bench")})
t.expect_failure(p, "EMA_BENCH_APPLY names a missing file", "EMA_BENCH_APPLY", "no-such-bench")
with open(t.path("not-executable"), "w") as f:
    f.write("")
p = t.run("bench", env={"EMA_BENCH_APPLY": t.path("not-executable")})
t.expect_failure(p, "EMA_BENCH_APPLY names a file that is not executable", "not an executable")

# the real one, found without help, on a tiny configuration
if t.args.bench and os.path.exists(t.args.bench):
    env = {"EMA_BENCH_APPLY": ""}
    p = t.run("bench", "--quick", "--layouts", "small", "--threads", "1", "--dtypes", "f32", "--reps", "1",
              "--warmup", "0", env=env)
    t.expect(p, 0, "ema bench runs the real bench_apply", stdout_has=["libema", "small"])
    p = t.run("bench", "--no-such-flag", env=env)
    t.expect(p, 2, "bench_apply's own usage error comes back", stderr_has="bench_apply")
else:
    print("note: no bench_apply built; only the stand-in was run")

t.done()
