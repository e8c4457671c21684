#!/usr/bin/python3
"""tests/python/gpu_check.py: the CUDA checks of ema.torch, in one go, for a
machine with a CUDA device and torch (issue 14 item 4 and 5). It runs the
CUDA tests (tests/python/test_torch_cuda.py) and a short benchmark, then
prints the numbers:

  step time (median ms) of a GEMM-heavy training step (an MLP of ~100M
  parameters, AdamW, batch 64) with
    none       no EMA
    offload    EMA(model, 0.999, device="cpu"): host averages, D2H copies on
               a side stream, libema's asynchronous update
    device     EMA(model, 0.999): averages on the device (DeviceEMA, foreach)
    foreach    torch._foreach_mul_ + _foreach_add_ of the shadows on the device
  and each ratio to "none".

Without CUDA it prints why and exits 0 (so it can sit in any test run).

usage: EMA_LIBRARY=build/libema.so python3 tests/python/gpu_check.py [--steps N] [--width W] [--layers L]
"""
import argparse
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "python"))


def bench(args, torch):
    from ema.torch import EMA
    nn = torch.nn
    dev = torch.device("cuda")

    def model():
        torch.manual_seed(0)
        layers = []
        for _ in range(args.layers):
            layers += [nn.Linear(args.width, args.width), nn.GELU()]
        return nn.Sequential(*layers).to(dev)

    def run(kind):
        m = model()
        opt = torch.optim.AdamW(m.parameters(), lr=1e-4)
        x = torch.randn(args.batch, args.width, device=dev)
        update = None
        if kind == "offload":
            e = EMA(m, 0.999, device="cpu").register()
            update = e.update
        elif kind == "device":
            e = EMA(m, 0.999).register()
            update = e.update
        elif kind == "foreach":
            ps = [p.detach() for p in m.parameters()]
            sh = [p.clone() for p in ps]

            def update():
                with torch.no_grad():
                    torch._foreach_mul_(sh, 0.999)
                    torch._foreach_add_(sh, ps, alpha=0.001)
        ts = []
        for i in range(args.warmup + args.steps):
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            loss = m(x).square().mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if update is not None:
                update()
            torch.cuda.synchronize()
            if i >= args.warmup:
                ts.append(time.perf_counter() - t0)
        if kind == "offload":
            e.wait()
        n = sum(p.numel() for p in m.parameters())
        return statistics.median(ts), n

    res = {k: run(k) for k in ("none", "offload", "device", "foreach")}
    base = res["none"][0]
    print(f"\n# {torch.cuda.get_device_name(0)}; torch {torch.__version__}; {res['none'][1] / 1e6:.1f}M parameters "
          f"({args.layers} x Linear({args.width})), batch {args.batch}, AdamW, {args.steps} steps after "
          f"{args.warmup}, median")
    print("| EMA | step ms | / no EMA |")
    print("|---|---:|---:|")
    for k, (t, _) in res.items():
        print(f"| {k} | {t * 1e3:.2f} | {t / base:.3f} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--width", type=int, default=2048)
    ap.add_argument("--layers", type=int, default=24)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--no-tests", action="store_true")
    args = ap.parse_args()
    try:
        import torch
    except ImportError:
        print("SKIP: torch is not installed: no CUDA check")
        return 0
    if not torch.cuda.is_available():
        print(f"SKIP: torch {torch.__version__} sees no CUDA device: the CUDA tests and benchmark were not run")
        return 0
    rc = 0
    if not args.no_tests:
        rc = subprocess.call([sys.executable, "-m", "pytest", "-q", "-rs",
                              os.path.join(HERE, "test_torch_cuda.py"), os.path.join(HERE, "test_torch_offload.py")],
                             cwd=HERE)
        print(f"# CUDA tests: exit status {rc}")
    bench(args, torch)
    return rc


if __name__ == "__main__":
    sys.exit(main())
