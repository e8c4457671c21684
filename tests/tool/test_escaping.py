#!/usr/bin/python3
"""tests/tool/test_escaping.py: strings that came from a file never reach
the terminal raw (issue 11, item 3).

tool_fixture writes a checkpoint whose tensor name holds an ESC colour
sequence, a newline followed by a forged "ema:" line and a C1 control
(U+009B, a CSI on some terminals), whose metadata has a value with a newline
and a key with an OSC title sequence; and post-hoc snapshots, one with such
an ema.t. Then `ema inspect` (text and --json), `ema extract`,
`ema posthoc` and `ema smooth` (a CSV with hostile cells and column names)
must print no ESC, no U+009B, no forged line: text output shows the bytes as
\\xNN (the library's ema_escape), JSON escapes them (and decodes back to the file's exact name), and
every failure is one line on stderr.
"""
import json
import os

import toolcheck

t = toolcheck.Context()
d = t.path("hostile")
os.mkdir(d)
t.fixture("hostile", d)
evil = os.path.join(d, "evil.safetensors")
NAME = "w\x1b[31mred\nema: forged\u009b"
BAD = ["\x1b", "\u009b", "\x07"]


def clean(text, what):
    t.check(not any(b in text for b in BAD), what + ": no raw control characters", repr(text[:300]))


def one_line_error(p, what, *needles):
    if t.expect(p, 1, what):
        lines = p.stderr.splitlines()
        t.check(len(lines) == 1 and lines[0].startswith("ema: "), what + ": one line on stderr", repr(p.stderr))
        for n in needles:
            t.check(n in p.stderr, what + ": mentions %r" % n, repr(p.stderr))
        clean(p.stderr, what)
        t.check("\nema: ok" not in p.stderr and "\nema: forged" not in p.stderr, what + ": no forged line")


p = t.run("inspect", evil)
if t.expect(p, 0, "inspect (text)"):
    clean(p.stdout, "inspect (text)")
    t.check("w\\x1B[31mred\\x0Aema: forged\\xC2\\x9B" in p.stdout, "inspect: the name escaped", p.stdout)
    t.check("0.5\\x0Aema: all good" in p.stdout, "inspect: the metadata value escaped")
    t.check("note\\x1B]0;pwned\\x07" in p.stdout, "inspect: the metadata key escaped")
    t.check(not any(line.startswith("ema: ") for line in p.stdout.splitlines()), "inspect: no forged line")
p = t.run("inspect", "--json", evil)
if t.expect(p, 0, "inspect --json"):
    clean(p.stdout, "inspect --json")
    doc = json.loads(p.stdout)
    names = [x["name"] for x in doc["tensors"]]
    t.check(NAME in names and NAME + "/ExponentialMovingAverage" in names, "JSON decodes to the exact names", names)
    t.check(doc["metadata"]["ema.decay"] == "0.5\nema: all good", "JSON decodes to the exact metadata")

out = t.path("extracted.safetensors")
p = t.run("extract", evil, "-o", out)
if t.expect(p, 0, "extract"):
    clean(p.stdout + p.stderr, "extract")
p = t.run("extract", evil, "--ema-name", "No\x1b[2JSuch", "-o", t.path("none.safetensors"))
t.check(p.returncode != 0, "extract with a missing average fails", p.returncode)
clean(p.stderr, "extract failure")
t.check(len(p.stderr.splitlines()) == 1, "extract failure: one line", repr(p.stderr))

snaps = [os.path.join(d, "snap_ok.safetensors"), os.path.join(d, "snap_evil.safetensors")]
p = t.run("posthoc", "--sigma-rel", "0.07", *snaps, "-o", t.path("ph.safetensors"))
one_line_error(p, "posthoc with a hostile ema.t", "snap_evil", "\\x1B[2J\\x0Aema: ok")

csv = t.path("hostile.csv")
with open(csv, "w") as f:
    f.write("day,temp\x1b[5m\n1,2.5\n2,3\x1b]0;x\x07\n3,4\n")
p = t.run("smooth", "--input", csv, "--column", "temp\x1b[5m", "--alpha", "0.5")
one_line_error(p, "smooth with a hostile cell", "\\x1B]0;x\\x07")
p = t.run("smooth", "--input", csv, "--column", "nope", "--alpha", "0.5")
one_line_error(p, "smooth with a missing column", "temp\\x1B[5m")

p = t.run("no\x1b[2Jsuch")
t.check(p.returncode == 2, "unknown command: usage error", p.returncode)
clean(p.stderr, "unknown command")

t.done()
