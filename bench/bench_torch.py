#!/usr/bin/python3
# bench_torch: libema against the usual PyTorch ways of keeping an EMA of
# model weights, on the same four parameter layouts as bench_apply, in one run.
#
# Torch methods (float32 parameters, decay 0.999, under torch.no_grad()):
#   seeds     the hand-written EMA class of the seed blog post:
#             new_average = (1.0 - decay) * param.data + decay * shadow;
#             shadow = new_average.clone()
#   mul_add   per parameter: shadow.mul_(d).add_(p, alpha=1 - d)
#   foreach   torch._foreach_mul_(shadows, d); torch._foreach_add_(shadows,
#             params, alpha=1 - d)
#   averaged  torch.optim.swa_utils.AveragedModel with an EMA avg_fn,
#             update_parameters(model)
# each with torch.set_num_threads(1) and (2); libema is called through ctypes
# on the very same tensors (ema_track on data_ptr()), with ema_set_threads(1)
# and (2). It loads the shared library from the build directory
# (build-bench/libema.so by default) and does not use the python/ package.
#
# Run with Debian's interpreter and python3-torch: /usr/bin/python3.
# --probe adds where libema's time on the small layout goes in this process
# (tensors placed by torch's allocator against views into one block).
# Times are medians of --reps runs after warm-up; "GB/s" is the effective
# rate 12 bytes/param / time (what the update needs to move; the torch
# methods really move more, which is why they are slower).
import argparse
import ctypes
import gc
import os
import resource
import statistics
import sys
import time

import torch

# the seeds' class, shared with the tests (tests/python/reference_ema.py)
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "python"))
from reference_ema import SeedEMA  # noqa: E402

DECAY = 0.999
HERE = os.path.dirname(os.path.abspath(__file__))

# ---------------------------------------------------------------------------
# Layouts (the same shapes as bench/bench_apply.c)
# ---------------------------------------------------------------------------


def layout_flat():
    return [(100000000,)]


def layout_small():
    return [(1000,)] * 10000


def layout_resnet50():
    """torchvision resnet50 parameters: convs [out, in, kh, kw], BN w/b."""
    s = [(64, 3, 7, 7), (64,), (64,)]
    inplanes = 64
    for planes, blocks in zip((64, 128, 256, 512), (3, 4, 6, 3)):
        for b in range(blocks):
            s += [(planes, inplanes, 1, 1), (planes,), (planes,)]
            s += [(planes, planes, 3, 3), (planes,), (planes,)]
            s += [(4 * planes, planes, 1, 1), (4 * planes,), (4 * planes,)]
            if b == 0:
                s += [(4 * planes, inplanes, 1, 1), (4 * planes,), (4 * planes,)]
            inplanes = 4 * planes
    s += [(1000, 2048), (1000,)]
    return s


def layout_gpt2():
    """Hugging Face GPT-2 small (Conv1D weights [in, out], lm_head tied)."""
    d = 768
    s = [(50257, d), (1024, d)]
    for _ in range(12):
        s += [(d,), (d,), (d, 3 * d), (3 * d,), (d, d), (d,),
              (d,), (d,), (d, 4 * d), (4 * d,), (4 * d, d), (d,)]
    s += [(d,), (d,)]
    return s


# name -> (builder, tensor count, parameter count, --quick divisor)
LAYOUTS = {
    "flat": (layout_flat, 1, 100000000, 64),
    "small": (layout_small, 10000, 10000000, 10),
    "resnet50": (layout_resnet50, 161, 25557032, 64),
    "gpt2": (layout_gpt2, 148, 124439808, 64),
}


def numel(shape):
    n = 1
    for x in shape:
        n *= x
    return n


def make_shapes(name, quick):
    build, count, total, div = LAYOUTS[name]
    shapes = build()
    got = (len(shapes), sum(numel(s) for s in shapes))
    if got != (count, total):
        sys.exit(f"bench_torch: layout {name} has {got}, expected {(count, total)}")
    if quick:
        shapes = [((numel(s) + div - 1) // div,) for s in shapes]
    return shapes


class Holder(torch.nn.Module):
    """A model that is only its parameters."""

    def __init__(self, shapes):
        super().__init__()
        self.params = torch.nn.ParameterList(
            torch.nn.Parameter(torch.empty(s).uniform_(0.5, 1.5)) for s in shapes)


# ---------------------------------------------------------------------------
# libema through ctypes
# ---------------------------------------------------------------------------


class Libema:
    def __init__(self, path):
        self.lib = lib = ctypes.CDLL(path)
        vp, i32, i64 = ctypes.c_void_p, ctypes.c_int, ctypes.c_int64
        lib.ema_create.argtypes = [ctypes.POINTER(vp), ctypes.c_double]
        lib.ema_create.restype = i32
        lib.ema_track.argtypes = [vp, ctypes.c_char_p, vp, i32, i32, ctypes.POINTER(i64)]
        lib.ema_track.restype = i32
        lib.ema_set_threads.argtypes = [vp, i32]
        lib.ema_set_threads.restype = i32
        lib.ema_apply.argtypes = [vp]
        lib.ema_apply.restype = i32
        lib.ema_free.argtypes = [vp]
        lib.ema_free.restype = None
        lib.ema_last_error.argtypes = [vp]
        lib.ema_last_error.restype = ctypes.c_char_p
        lib.ema_isa.argtypes = []
        lib.ema_isa.restype = ctypes.c_char_p
        lib.ema_version_string.argtypes = []
        lib.ema_version_string.restype = ctypes.c_char_p

    def isa(self):
        return self.lib.ema_isa().decode()

    def version(self):
        return self.lib.ema_version_string().decode()


class LibemaEMA:
    """One libema context over the model's float32 parameters (borrowed)."""

    EMA_F32 = 0

    def __init__(self, api, params):
        self.api, self.lib = api, api.lib
        self.ctx = ctypes.c_void_p()
        self._check(self.lib.ema_create(ctypes.byref(self.ctx), DECAY), "ema_create")
        for i, p in enumerate(params):
            assert p.dtype == torch.float32 and p.is_contiguous()
            shape = (ctypes.c_int64 * max(1, p.dim()))(*p.shape)
            self._check(self.lib.ema_track(self.ctx, f"t{i}".encode(), p.data_ptr(),
                                           self.EMA_F32, p.dim(), shape), "ema_track")

    def _check(self, st, what):
        if st != 0:
            detail = self.lib.ema_last_error(self.ctx).decode() if self.ctx else ""
            raise RuntimeError(f"{what} failed with status {st}: {detail}")

    def set_threads(self, n):
        self._check(self.lib.ema_set_threads(self.ctx, n), "ema_set_threads")

    def update(self):
        self._check(self.lib.ema_apply(self.ctx), "ema_apply")

    def close(self):
        if self.ctx:
            self.lib.ema_free(self.ctx)
            self.ctx = ctypes.c_void_p()


# ---------------------------------------------------------------------------
# Torch methods
# ---------------------------------------------------------------------------


class MulAdd:
    def __init__(self, model):
        self.params = [p.detach() for p in model.parameters()]
        self.shadows = [p.clone() for p in self.params]

    def update(self):
        for s, p in zip(self.shadows, self.params):
            s.mul_(DECAY).add_(p, alpha=1.0 - DECAY)


class Foreach:
    def __init__(self, model):
        self.params = [p.detach() for p in model.parameters()]
        self.shadows = [p.clone() for p in self.params]

    def update(self):
        torch._foreach_mul_(self.shadows, DECAY)
        torch._foreach_add_(self.shadows, self.params, alpha=1.0 - DECAY)


def ema_avg(averaged, current, num_averaged):
    return DECAY * averaged + (1.0 - DECAY) * current


class Averaged:
    def __init__(self, model):
        self.model = model
        self.swa = torch.optim.swa_utils.AveragedModel(model, avg_fn=ema_avg)
        self.swa.update_parameters(model)  # n_averaged == 0: a plain copy

    def update(self):
        self.swa.update_parameters(self.model)


def make_seed(model):
    e = SeedEMA(model, DECAY)
    e.register()
    return e


METHODS = [
    ("seeds", make_seed),
    ("mul_add", MulAdd),
    ("foreach", Foreach),
    ("averaged", Averaged),
]

# ---------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------


def time_it(fn, warmup, reps):
    for _ in range(warmup):
        fn()
    t = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        t.append(time.perf_counter() - t0)
    return t


def fmt_ms(s):
    return f"{s * 1e3:10.2f}"


def probe_small(api, warmup, reps):
    """Where libema's time on the small layout goes inside a torch process:
    the same 10,000 x 1,000 float32 tensors as torch allocates them, against
    10,000 views into one contiguous block (4 KiB apart), 1 thread."""
    print("\nprobe: libema on 10,000 x 1,000 float32, 1 thread, by where the tensors live")
    with torch.no_grad():
        model = Holder(layout_small())
        ps = [p.detach() for p in model.parameters()]
        block = torch.empty(10000 * 1024).uniform_(0.5, 1.5)
        views = [block[i * 1024:i * 1024 + 1000] for i in range(10000)]
        for label, tensors in (("torch-allocated parameters", ps),
                               ("views into one block", views)):
            addrs = sorted(t.data_ptr() for t in tensors)
            gaps = [b - a for a, b in zip(addrs, addrs[1:])]
            lib = LibemaEMA(api, tensors)
            lib.set_threads(1)
            t = time_it(lib.update, warmup, reps)
            lib.close()
            med = statistics.median(t)
            print(f"  {label:<27} median address gap {statistics.median(gaps):6.0f} B: "
                  f"{med * 1e3:6.2f} ms, {12e-9 * 10000000 / med:6.2f} GB/s")


def main():
    ap = argparse.ArgumentParser(description="libema against PyTorch EMA methods")
    ap.add_argument("--layouts", default="flat,small,resnet50,gpt2")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--reps", type=int, default=None, help="timed runs (default 7; --quick 2)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="shrunk layouts, a smoke test")
    ap.add_argument("--probe", action="store_true",
                    help="also time libema on the small layout by tensor placement")
    ap.add_argument("--lib", default=os.path.join(HERE, "..", "build-bench", "libema.so"),
                    help="path of libema.so (default: build-bench/libema.so)")
    args = ap.parse_args()
    reps = args.reps if args.reps is not None else (2 if args.quick else 7)
    layouts = [x for x in args.layouts.split(",") if x]
    for name in layouts:
        if name not in LAYOUTS:
            sys.exit(f"bench_torch: unknown layout {name}")
    threads = [int(x) for x in args.threads.split(",") if x]

    api = Libema(os.path.abspath(args.lib))
    torch.manual_seed(0)
    par = [ln.strip() for ln in torch.__config__.parallel_info().splitlines()
           if "backend" in ln]
    print(f"torch {torch.__version__} ({', '.join(par)}), python {sys.version.split()[0]}, "
          f"libema {api.version()} kernels {api.isa()} from {os.path.abspath(args.lib)}")
    print(f"median of {reps} reps after {args.warmup} warm-up"
          f"{'; QUICK sizes (smoke test, not a measurement)' if args.quick else ''}; "
          f"GB/s = 12 bytes/param / time; speed-up = torch time / libema time\n")
    hdr = f"{'layout':<9} {'thr':>3} {'method':<9} {'ms':>10} {'GB/s':>7} {'spread':>7} {'libema x':>9}"
    print(hdr)

    summary = []  # (layout, threads, {method: median s})
    with torch.no_grad():
        for name in layouts:
            shapes = make_shapes(name, args.quick)
            n = sum(numel(s) for s in shapes)
            model = Holder(shapes)
            params = [p for p in model.parameters()]
            lib = LibemaEMA(api, [p.detach() for p in params])
            for nt in threads:
                torch.set_num_threads(nt)
                lib.set_threads(nt)
                res = {}
                # libema before and after the torch methods: drift hits both
                tl = time_it(lib.update, args.warmup, reps)
                for mname, make in METHODS:
                    m = make(model)
                    res[mname] = time_it(m.update, args.warmup, reps)
                    del m
                    gc.collect()
                tl += time_it(lib.update, args.warmup, reps)
                res = {"libema": tl, **res}
                med = {k: statistics.median(v) for k, v in res.items()}
                for k, v in res.items():
                    spread = (max(v) - min(v)) / med[k] * 100.0
                    x = "" if k == "libema" else f"{med[k] / med['libema']:8.1f}x"
                    print(f"{name:<9} {nt:>3} {k:<9} {fmt_ms(med[k])} "
                          f"{12 * n / med[k] * 1e-9:7.2f} {spread:6.1f}% {x:>9}")
                sys.stdout.flush()
                summary.append((name, nt, med))
            lib.close()
            del lib, params, model
            gc.collect()

    print("\nlibema speed-up over each torch method (torch median / libema median):")
    print(f"{'layout':<9} {'thr':>3} " + " ".join(f"{m:>9}" for m, _ in METHODS) +
          f" {'best torch':>11}")
    for name, nt, med in summary:
        cells = " ".join(f"{med[m] / med['libema']:8.1f}x" for m, _ in METHODS)
        best = min((med[m], m) for m, _ in METHODS)
        print(f"{name:<9} {nt:>3} {cells} {best[0] / med['libema']:6.1f}x {best[1]}")
    if args.probe:
        probe_small(api, args.warmup, reps)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(f"\npeak RSS {rss:.0f} MiB; spread = (max - min) / median within this run")


if __name__ == "__main__":
    main()
