#!/usr/bin/python3
"""tests/tool/test_demo.py: `ema demo`, the main job.

It runs, fast; it prints one table row per epoch; the EMA beats the raw
weights on held-out data at the end (what the demo is there to show); both
restores of the checkpoint match what training saw bit for bit (the demo
checks that itself and fails otherwise); the checkpoint holds the averages
and global_step as plain state; the plot is well-formed SVG; and
examples/train_mlp.c, the demo's readable twin, prints the same table.
"""
import os
import re
import subprocess
import time
import xml.etree.ElementTree as ET

import toolcheck

ROW = re.compile(r"^\s*(\d+)\s+(\d+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)%\s+([\d.]+)\s+([\d.]+)%\s*$")

t = toolcheck.Context()


def table(text):
    return [tuple(float(g) for g in m.groups()) for m in map(ROW.match, text.splitlines()) if m]


out = t.path("demo")
start = time.time()
p = t.run("demo", "--out", out)
took = time.time() - start
t.expect(p, 0, "ema demo", stdout_has=["epoch", "raw loss", "EMA acc"])
t.check(took < 60, "demo runs in under a minute (%.1fs)" % took)
t.check(p.stderr == "", "nothing on stderr", p.stderr)
rows = table(p.stdout)
t.check(len(rows) == 20, "20 table rows (default --epochs 20)", p.stdout)
if rows:
    last = rows[-1]
    t.check(last[0] == 20 and last[1] == 4000, "last row: epoch 20, step 4000", last)
    t.check(abs(last[2] - 0.995) < 1e-6, "effective decay reaches 0.995 after the warm-up", last)
    t.check(rows[0][2] < 0.99, "warm-up: the first epoch's decay is below 0.995", rows[0])
    t.check(last[6] > last[4], "EMA accuracy beats raw accuracy at the end", last)
    t.check(last[5] < last[3], "EMA loss beats raw loss at the end", last)
    wins = sum(r[6] > r[4] for r in rows[2:])
    t.check(wins >= len(rows[2:]) - 2, "EMA accuracy beats raw in (almost) every epoch after warm-up", rows)
t.check(p.stdout.count("yes, bit for bit") == 2, "both restores equal what training saw", p.stdout)
t.check("ema_load (plain restore)" in p.stdout and "raw weights" in p.stdout, "plain restore gives the raw weights")
t.check("ema_load_averages_into_model" in p.stdout and "averaged weights" in p.stdout,
        "variables_to_restore gives the averages")

ckpt = os.path.join(out, "checkpoint.safetensors")
svg = os.path.join(out, "demo.svg")
t.check(os.path.isfile(ckpt), "checkpoint written")
t.check(os.path.isfile(svg), "plot written")
try:
    root = ET.parse(svg).getroot()
    t.check(root.tag.endswith("svg"), "plot is an SVG document")
    texts = " ".join(e.text or "" for e in root.iter() if e.tag.endswith("text"))
    for s in ["Held-out loss", "Held-out accuracy", "raw weights", "EMA of the weights", "epoch"]:
        t.check(s in texts, "plot has the text %r" % s, texts[:300])
except ET.ParseError as e:
    t.check(False, "plot is well-formed XML", e)

# the checkpoint, seen by ema inspect
p = t.run("inspect", "--json", ckpt)
if t.expect(p, 0, "inspect the demo checkpoint"):
    import json
    info = json.loads(p.stdout)
    roles = {x["name"]: x["role"] for x in info["tensors"]}
    t.check(roles.get("global_step") == "state", "global_step is plain state", roles)
    for n in ["hidden.weight", "hidden.bias", "out.weight", "out.bias"]:
        t.check(roles.get(n) == "model", "%s is a model tensor" % n, roles)
        t.check(roles.get(n + "/ExponentialMovingAverage") == "average", "%s has an average" % n, roles)
    t.check(info["metadata"].get("ema.num_updates") == "4000", "num_updates 4000 saved", info["metadata"])

# options
p = t.run("demo", "--epochs", "3", "--seed", "7", "--no-plot", "--out", t.path("short"))
t.expect(p, 0, "--epochs 3 --seed 7 --no-plot")
t.check(len(table(p.stdout)) == 3, "3 rows for --epochs 3", p.stdout)
t.check(not os.path.exists(t.path("short", "demo.svg")), "--no-plot writes no plot")
t.check("seed 7" in p.stdout, "the seed is reported", p.stdout[:300])
p2 = t.run("demo", "--epochs", "3", "--seed", "7", "--no-plot", "--out", t.path("short2"))
t.check(table(p.stdout) == table(p2.stdout), "same seed, same table (deterministic)")
p3 = t.run("demo", "--epochs", "3", "--seed", "8", "--no-plot", "--out", t.path("short3"))
t.check(table(p.stdout) != table(p3.stdout), "another seed, another table")

# --out that cannot be a directory
with open(t.path("a-file"), "w") as f:
    f.write("x")
p = t.run("demo", "--epochs", "1", "--out", t.path("a-file"))
t.expect_failure(p, "--out is a file", "cannot create the directory")
p = t.run("demo", "--out", "")
t.expect_usage(p, "demo", "--out ''", "--out")

# the readable twin prints the same table
if t.args.example:
    twin = subprocess.run([t.args.example, t.path("twin.safetensors")], capture_output=True, text=True,
                          cwd=t.tmp, timeout=300)
    t.check(twin.returncode == 0, "examples/train_mlp runs and its restore check passes", twin.stdout + twin.stderr)
    t.check(table(twin.stdout) == rows, "examples/train_mlp prints the same table as ema demo",
            "%s\n---\n%s" % (twin.stdout, "\n".join(map(str, rows))))
    t.check(twin.stdout.count("(as in training)") == 2, "train_mlp: both restores as in training", twin.stdout)
else:
    print("note: no --example given, the twin is not compared")

t.done()
