#!/usr/bin/python3
"""tests/tool/test_cli.py: the `ema` command line as a whole.

--help / --version / COMMAND --help in the style of Unix tools, exit codes
(0 ok, 1 failure, 2 usage), usage errors that name the command and point to
--help, option spellings (--opt VALUE, --opt=VALUE, -o VALUE, --), and the
progress bar: drawn on a terminal for work over a second, never when stderr
is not a terminal.
"""
import os
import pty
import select
import subprocess
import time

import toolcheck

COMMANDS = ["demo", "smooth", "inspect", "extract", "posthoc", "bench"]

t = toolcheck.Context()

# ema alone, --help, --version
p = t.run()
t.expect(p, 2, "no command", stderr_has=["ema: missing command", "Usage: ema COMMAND"])
for flag in ["--help", "-h", "help"]:
    p = t.run(flag)
    t.expect(p, 0, "ema " + flag, stdout_has=["Usage: ema COMMAND"] + COMMANDS)
    t.check(p.stderr == "", "ema %s: nothing on stderr" % flag, p.stderr)
p = t.run("--version")
t.expect(p, 0, "--version", stdout_has=["ema (libema) ", "library "])
t.check(p.stdout.split()[2][0].isdigit(), "--version prints a version number", p.stdout)
p = t.run("-V")
t.expect(p, 0, "-V", stdout_has="ema (libema) ")
p = t.run("frobnicate")
t.expect(p, 2, "unknown command", stderr_has=["ema: unknown command 'frobnicate'", "ema --help"])
p = t.run("--frobnicate")
t.expect(p, 2, "unknown top-level option", stderr_has="ema: unknown option '--frobnicate'")
p = t.run("help", "nope")
t.expect(p, 2, "help of an unknown command", stderr_has="unknown command 'nope'")

# every command: --help, -h, ema help CMD, unknown option
for c in COMMANDS:
    for args in ([c, "--help"], [c, "-h"], ["help", c]):
        p = t.run(*args)
        t.expect(p, 0, " ".join(args), stdout_has=["Usage: ema " + c, "Exit status"])
        t.check(p.stdout.startswith("Usage: ema " + c), "%s: help starts with its usage" % " ".join(args))
    if c != "bench":  # bench passes unknown options to bench_apply
        p = t.run(c, "--no-such-option")
        t.expect_usage(p, c, c + " --no-such-option", "unknown option '--no-such-option'")
        p = t.run(c, "-Z")
        t.expect_usage(p, c, c + " -Z", "unknown option '-Z'")

# option spellings and value checks
p = t.run("demo", "--epochs")
t.expect_usage(p, "demo", "option without its value", "option '--epochs' needs a value")
for bad in ["abc", "0", "1001", "2.5", ""]:
    p = t.run("demo", "--epochs", bad)
    t.expect_usage(p, "demo", "--epochs %r" % bad, "--epochs")
p = t.run("demo", "--no-plot=yes")
t.expect_usage(p, "demo", "flag with a value", "option '--no-plot' takes no value")
p = t.run("demo", "extra-argument")
t.expect_usage(p, "demo", "stray positional argument", "unexpected argument 'extra-argument'")
p = t.run("inspect")
t.expect_usage(p, "inspect", "inspect without a file", "missing the checkpoint file")
p = t.run("inspect", "a.st", "b.st")
t.expect_usage(p, "inspect", "inspect with two files", "one checkpoint at a time")
p = t.run("smooth", "--beta=0.5", "--input=-", "--column=x", stdin="x\n1\n3\n")
t.expect(p, 0, "--opt=value spelling", stdout_has="x,x_ema\n1,1\n")
p = t.run("smooth", "-i", "-", "-c", "x", "--alpha", "0.5", stdin="x\n1\n3\n")
t.expect(p, 0, "short options", stdout_has="x_ema")
p = t.run("smooth", "-i-", "-cx", "--alpha", "0.5", stdin="x\n1\n3\n")
t.expect(p, 0, "short options with attached values", stdout_has="x_ema")
p = t.run("inspect", "--", "--not-an-option.st")
t.expect_failure(p, "'--' ends the options", "--not-an-option.st")

# a failure is one line on stderr, prefixed "ema: "
p = t.run("inspect", t.path("missing.safetensors"))
t.expect_failure(p, "missing file", "missing.safetensors")

# progress bar: none when stderr is not a terminal ...
p = t.run("demo", "--epochs", "3", "--no-plot", "--out", t.path("d0"))
t.expect(p, 0, "short demo")
t.check(p.stderr == "", "no progress output when stderr is not a terminal", repr(p.stderr[:200]))


# ... and drawn on a terminal when the work takes more than a second
def run_in_pty(args, limit=240):
    pid, fd = pty.fork()
    if pid == 0:
        os.execv(t.ema, [t.ema] + args)
    out = b""
    start = time.time()
    while time.time() - start < limit:
        r, _, _ = select.select([fd], [], [], 1.0)
        if fd in r:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), out.decode("utf-8", "replace")


start = time.time()
code, out = run_in_pty(["demo", "--epochs", "100", "--no-plot", "--out", t.path("d1")])
took = time.time() - start
t.check(code == 0, "demo on a terminal exits 0", out[-500:])
if took > 1.5:
    t.check("\rtraining [" in out and "%" in out, "progress bar drawn on a terminal (%.1fs of work)" % took,
            out[:500])
    t.check("\r\033[K" in out, "progress bar erased at the end", out[-300:])
else:
    print("note: the demo took %.1fs, too fast for a progress bar; not checked" % took)

t.done()
