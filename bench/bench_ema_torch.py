#!/usr/bin/python3
"""bench/bench_ema_torch.py: ema.torch.EMA.update() (the Python package in
python/, libema through ctypes) against the PyTorch ways of keeping an EMA,
in one run, on the same parameters.

Parameter sets (float32, decay 0.999):
  gpt2-small   GPT-2 small (124M parameters, 148 tensors; wte tied to the head)
  resnet50     ResNet-50 (25.6M parameters, 161 tensors; conv, BN, fc)
  10000x1000   10,000 tensors of 1,000 floats (many small tensors)

Methods, each keeping its own shadows of the same parameters:
  ema.torch      ema.torch.EMA(model, decay, threads=n).update()
  mul_add        per parameter: shadow.mul_(d).add_(param, alpha=1 - d)
  foreach        torch._foreach_mul_(shadows, d);
                 torch._foreach_add_(shadows, params, alpha=1 - d)
  seeds          the seeds' hand-written class (seeds/001): new_average =
                 (1.0 - decay) * param.data + decay * shadow; shadow = new_average.clone()
  AveragedModel  torch.optim.swa_utils.AveragedModel with an EMA avg_fn,
                 update_parameters(model)
with 1 and 2 threads (ema threads=n; torch.set_num_threads(n) for the rest).
The triad row is torch.add(b, c, alpha=s, out=a) over one buffer as large as
the set: the same 12 nominal bytes per float an EMA update moves, the
bandwidth reference of the same run. An EMA update can beat it: the triad
writes a third buffer, whose lines the CPU reads before writing them
(write-allocate), while the EMA writes the shadow it has just read.

Each method runs the same number of updates (warm-up + --reps timed); the
time is the median of the timed ones. GB/s is the nominal 12 bytes/param /
time; "% of triad" is the triad's time over the method's (the share of the
bandwidth reference reached); "ema.torch speed-up" is the method's time over
ema.torch's (> 1: ema.torch is faster). At the end every method's shadows are compared with ema.torch's
(they must agree within float32 rounding).

usage: EMA_LIBRARY=build/libema.so /usr/bin/python3 bench/bench_ema_torch.py
       [--reps N] [--sets gpt2-small,resnet50,10000x1000] [--threads 1,2] [--quick]
"""
import argparse
import gc
import os
import platform
import statistics
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "python"))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "python"))   # the seeds' class, shared with the tests
from reference_ema import SeedEMA  # noqa: E402
import ema  # noqa: E402
from ema.torch import EMA  # noqa: E402

DECAY = 0.999
nn = torch.nn


# ---------------------------------------------------------------------------
# Parameter sets
# ---------------------------------------------------------------------------

def shapes_gpt2_small():
    d, vocab, ctx, layers = 768, 50257, 1024, 12
    s = [(vocab, d), (ctx, d)]                       # wte (tied to lm_head), wpe
    for _ in range(layers):
        s += [(d,), (d,),                            # ln_1
              (d, 3 * d), (3 * d,), (d, d), (d,),    # attn c_attn, c_proj (Conv1D layout)
              (d,), (d,),                            # ln_2
              (d, 4 * d), (4 * d,), (4 * d, d), (d,)]  # mlp c_fc, c_proj
    return s + [(d,), (d,)]                          # ln_f


def shapes_resnet50():
    s = [(64, 3, 7, 7), (64,), (64,)]                # conv1, bn1
    cin = 64
    for width, blocks in ((64, 3), (128, 4), (256, 6), (512, 3)):
        for b in range(blocks):
            s += [(width, cin, 1, 1), (width,), (width,),
                  (width, width, 3, 3), (width,), (width,),
                  (4 * width, width, 1, 1), (4 * width,), (4 * width,)]
            if b == 0:                               # downsample conv + bn
                s += [(4 * width, cin, 1, 1), (4 * width,), (4 * width,)]
            cin = 4 * width
    return s + [(1000, 2048), (1000,)]               # fc


def shapes_small():
    return [(1000,)] * 10000


SETS = {"gpt2-small": shapes_gpt2_small, "resnet50": shapes_resnet50, "10000x1000": shapes_small}


class Bag(nn.Module):
    """A model that is just its parameters."""

    def __init__(self, shapes, gen):
        super().__init__()
        self.ps = nn.ParameterList(
            [nn.Parameter(torch.randn(*sh, generator=gen) * 0.02) for sh in shapes])

    def forward(self, x):  # pragma: no cover - never called
        return x


# ---------------------------------------------------------------------------
# Methods: make(model) -> (update(), shadows() -> list of tensors)
# ---------------------------------------------------------------------------

def make_ema(model, threads):
    e = EMA(model, DECAY, threads=threads).register()
    names = e.names(averaged=True)
    return e.update, lambda: [e.average(n) for n in names], e


def make_mul_add(model, threads):
    params = [p.detach() for p in model.parameters()]
    shadows = [p.clone() for p in params]

    def update():
        with torch.no_grad():
            for s, p in zip(shadows, params):
                s.mul_(DECAY).add_(p, alpha=1.0 - DECAY)
    return update, lambda: shadows, None


def make_foreach(model, threads):
    params = [p.detach() for p in model.parameters()]
    shadows = [p.clone() for p in params]

    def update():
        with torch.no_grad():
            torch._foreach_mul_(shadows, DECAY)
            torch._foreach_add_(shadows, params, alpha=1.0 - DECAY)
    return update, lambda: shadows, None


def make_seeds(model, threads):
    s = SeedEMA(model, DECAY)
    s.register()
    names = list(s.shadow)
    return s.update, lambda: [s.shadow[n] for n in names], s


def make_averaged(model, threads):
    swa = torch.optim.swa_utils.AveragedModel(
        model, avg_fn=lambda avg, p, n: DECAY * avg + (1.0 - DECAY) * p)
    swa.update_parameters(model)  # its first update copies the parameters
    return (lambda: swa.update_parameters(model),
            lambda: [p.detach() for p in swa.module.parameters()], swa)


def make_c_apply(model, threads):
    """The C ema_apply of the same tensors, called through ctypes with no
    Python check: the floor ema.torch's update() is measured against."""
    e = EMA(model, DECAY, threads=threads).register()
    names = e.names(averaged=True)
    fn, ptr = ema._lib.lib.ema_apply, e._ctx.h.ptr
    return (lambda: fn(ptr)), lambda: [e.average(n) for n in names], e


METHODS = [("ema.torch", make_ema), ("C ema_apply", make_c_apply), ("mul_add", make_mul_add), ("foreach", make_foreach),
           ("seeds", make_seeds), ("AveragedModel", make_averaged)]


# ---------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------

def timed(fn, warmup, reps):
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def triad(n, warmup, reps):
    a = torch.empty(n)
    b = torch.randn(n)
    c = torch.randn(n)
    return timed(lambda: torch.add(b, c, alpha=1.0 - DECAY, out=a), warmup, reps)


def interleaved_ratio(model, threads, warmup, reps):
    """update() and the raw C ema_apply on the same context, alternated call
    by call so that both see the same machine load: (update s, C s)."""
    e = EMA(model, DECAY, threads=threads).register()
    fn, ptr = ema._lib.lib.ema_apply, e._ctx.h.ptr
    for _ in range(warmup):
        e.update()
        fn(ptr)
    tu, tc = [], []
    for _ in range(max(reps, 9)):
        t0 = time.perf_counter()
        e.update()
        t1 = time.perf_counter()
        fn(ptr)
        t2 = time.perf_counter()
        tu.append(t1 - t0)
        tc.append(t2 - t1)
    e.close()
    return statistics.median(tu), statistics.median(tc)


def state_dict_times(set_name, model, threads, warmup, reps):
    """(set, state_dict() s, load_state_dict() s, clone of every shadow s)."""
    e = EMA(model, DECAY, threads=threads).register()
    e.update()
    names = e.names(averaged=True)
    views = [e.average_view(n) for n in names]
    t_clone = timed(lambda: [v.clone() for v in views], warmup, reps)
    t_sd = timed(e.state_dict, warmup, reps)
    sd = e.state_dict()
    t_load = timed(lambda: e.load_state_dict(sd), warmup, reps)
    e.close()
    return set_name, t_sd, t_load, t_clone


def machine():
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (f"{cpu}, {os.cpu_count()} CPUs; Python {platform.python_version()}, torch "
            f"{torch.__version__}; libema {ema.library_version} "
            f"({ema.library_path}), kernels {ema.isa()}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--sets", default=",".join(SETS))
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--quick", action="store_true", help="tiny sizes, a smoke test")
    args = ap.parse_args()
    threads = [int(t) for t in args.threads.split(",")]
    print(f"# bench_ema_torch: {machine()}")
    print(f"# decay {DECAY}, float32, {args.warmup} warm-up + {args.reps} timed updates per method, "
          f"median; GB/s = 12 bytes/param / time")
    rows = []
    states = []
    inter = []
    worst = {}
    for set_name in args.sets.split(","):
        shapes = SETS[set_name]()
        if args.quick:
            shapes = [tuple(max(1, d // 16) for d in sh) for sh in shapes[:200]]
        gen = torch.Generator().manual_seed(0)
        model = Bag(shapes, gen)
        n = sum(p.numel() for p in model.parameters())
        for th in threads:
            torch.set_num_threads(th)
            t_triad = triad(n, args.warmup, args.reps)
            results = {}
            reference = None
            for mname, make in METHODS:
                with torch.no_grad():  # the same starting point for every method
                    for i, p in enumerate(model.parameters()):
                        p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(i)) * 0.02)
                update, shadows, keep = make(model, th)
                with torch.no_grad():
                    for p in model.parameters():
                        p.add_(0.01)  # so that the averages move
                t = timed(update, args.warmup, args.reps)
                results[mname] = t
                got = shadows()
                if reference is None:
                    reference = [g.clone() for g in got]
                else:
                    err = max(float((a - b).abs().max()) for a, b in zip(reference, got) if a.numel())
                    worst[(set_name, th, mname)] = err
                del update, shadows, keep, got
                gc.collect()
            del reference
            gc.collect()
            te = results["ema.torch"]
            rows.append((set_name, n, len(shapes), th, "triad (torch.add out=)", t_triad, None, t_triad))
            for mname, _ in METHODS:
                rows.append((set_name, n, len(shapes), th, mname, results[mname], te, t_triad))
        states.append(state_dict_times(set_name, model, threads[-1], args.warmup, args.reps))
        for th in threads:
            inter.append((set_name, th) + interleaved_ratio(model, th, args.warmup, args.reps))
        del model
        gc.collect()

    print()
    print("| parameters | threads | method | ms/update | GB/s | % of triad | ema.torch speed-up |")
    print("|---|---:|---|---:|---:|---:|---:|")
    for set_name, n, nt, th, mname, t, te, tt in rows:
        label = f"{set_name} ({n / 1e6:.1f}M, {nt} tensors)"
        gbs = 12.0 * n / t / 1e9
        speed = "" if te is None else f"{t / te:.2f}x"
        print(f"| {label} | {th} | {mname} | {t * 1e3:.2f} | {gbs:.1f} | {100 * tt / t:.0f}% | {speed} |")
    print()
    print("| parameters | threads | update() / C ema_apply |")
    print("|---|---:|---:|")
    for set_name, n, nt, th, mname, t, te, tt in rows:
        if mname == "C ema_apply":
            print(f"| {set_name} | {th} | {te / t:.2f} |")
    print()
    print("| parameters | threads | update() ms | C ema_apply ms | ratio (interleaved calls) |")
    print("|---|---:|---:|---:|---:|")
    for set_name, th, tu, tc in inter:
        print(f"| {set_name} | {th} | {tu * 1e3:.2f} | {tc * 1e3:.2f} | {tu / tc:.2f} |")
    print()
    print("| parameters | state_dict() ms | load_state_dict() ms | clone of the shadows ms | state_dict / clone | load / clone |")
    print("|---|---:|---:|---:|---:|---:|")
    for set_name, tsd, tld, tcl in states:
        print(f"| {set_name} | {tsd * 1e3:.1f} | {tld * 1e3:.1f} | {tcl * 1e3:.1f} | {tsd / tcl:.2f} | {tld / tcl:.2f} |")
    print()
    bad = {k: v for k, v in worst.items() if not v <= 1e-5}
    print("# agreement with ema.torch (max |difference| of the shadows): "
          f"worst {max(worst.values()):.2e}" if worst else "")
    if bad:
        print("# DISAGREEMENT:", bad)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
