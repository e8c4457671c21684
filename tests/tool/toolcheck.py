"""tests/tool/toolcheck.py: what the `ema` tool's test scripts share.

Every test_*.py here is run by ctest as

    python3 test_X.py PATH/TO/ema --fixture PATH --st-reader DIR --example PATH --bench PATH

(tests/tool/tests.cmake), where --fixture is tests/tool/tool_fixture.c built,
--st-reader the folder of tests/python/st_reader.py (an independent
safetensors reader), --example examples/train_mlp.c built and --bench
bench_apply (the last two may be empty when those targets do not exist).

Conventions: a failed check prints "FAIL: ..." and the script exits 1 at the
end; a missing oracle (pandas, numpy, chromium) exits 77, which ctest reports
as skipped. Only the standard library here; scripts import numpy/pandas
themselves when they need them.
"""
import argparse
import os
import subprocess
import sys
import tempfile

SKIP = 77


class Context:
    def __init__(self):
        ap = argparse.ArgumentParser()
        ap.add_argument("ema")
        ap.add_argument("--fixture", default="")
        ap.add_argument("--st-reader", default="")
        ap.add_argument("--example", default="")
        ap.add_argument("--bench", default="")
        self.args = ap.parse_args()
        self.ema = os.path.abspath(self.args.ema)
        self.failures = 0
        self.checks = 0
        self._tmp = tempfile.TemporaryDirectory(prefix="ema-tool-test-")
        self.tmp = self._tmp.name
        if self.args.st_reader:
            sys.path.insert(0, self.args.st_reader)

    def path(self, *parts):
        return os.path.join(self.tmp, *parts)

    def run(self, *args, stdin=None, env=None, cwd=None, timeout=300):
        """Run ema with args; returns CompletedProcess with text output."""
        e = dict(os.environ)
        if env:
            e.update(env)
        return subprocess.run([self.ema] + [str(a) for a in args], input=stdin, capture_output=True,
                              text=True, env=e, cwd=cwd or self.tmp, timeout=timeout)

    def fixture(self, *args):
        if not self.args.fixture:
            print("SKIP: no tool_fixture given")
            sys.exit(SKIP)
        subprocess.run([self.args.fixture] + [str(a) for a in args], check=True)

    def check(self, cond, what, detail=""):
        self.checks += 1
        if not cond:
            self.failures += 1
            print("FAIL: %s%s" % (what, ("\n    " + str(detail).replace("\n", "\n    ")) if detail else ""))
        return cond

    def expect(self, proc, code, what, stderr_has=(), stdout_has=()):
        """Check an exit status and substrings of stderr/stdout."""
        detail = "exit %d\nstdout: %s\nstderr: %s" % (proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])
        ok = self.check(proc.returncode == code, "%s: exit status %d" % (what, code), detail)
        for s in ([stderr_has] if isinstance(stderr_has, str) else stderr_has):
            ok &= self.check(s in proc.stderr, "%s: stderr contains %r" % (what, s), detail)
        for s in ([stdout_has] if isinstance(stdout_has, str) else stdout_has):
            ok &= self.check(s in proc.stdout, "%s: stdout contains %r" % (what, s), detail)
        return ok

    def expect_failure(self, proc, what, *needles):
        """Exit 1 with one 'ema: ' line on stderr that contains the needles."""
        lines = proc.stderr.splitlines()
        ok = self.expect(proc, 1, what, stderr_has=needles)
        ok &= self.check(len(lines) == 1 and lines[0].startswith("ema: "),
                         "%s: one stderr line starting with 'ema: '" % what, proc.stderr)
        return ok

    def expect_usage(self, proc, command, what, *needles):
        """Exit 2: 'ema: CMD: ...', the synopsis and a pointer to --help."""
        lines = proc.stderr.splitlines()
        ok = self.expect(proc, 2, what, stderr_has=needles)
        ok &= self.check(bool(lines) and lines[0].startswith("ema: %s: " % command),
                         "%s: first stderr line starts with 'ema: %s: '" % (what, command), proc.stderr)
        ok &= self.check("Usage: ema %s" % command in proc.stderr and
                         "Try 'ema %s --help'" % command in proc.stderr,
                         "%s: usage and --help pointer on stderr" % what, proc.stderr)
        return ok

    def done(self):
        print("%d checks, %d failed" % (self.checks, self.failures))
        sys.exit(1 if self.failures else 0)


def need(module):
    """Import a module or skip the test (exit 77)."""
    try:
        return __import__(module)
    except ImportError as e:
        print("SKIP: %s not importable (%s)" % (module, e))
        sys.exit(SKIP)
