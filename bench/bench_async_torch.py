#!/usr/bin/python3
"""bench/bench_async_torch.py: the EMA's cost inside a compute-bound CPU
training step (issue 14 item 5), all variants measured in one run,
interleaved round by round so that they see the same machine.

The step: an MLP of LAYERS Linear(WIDTH, WIDTH) + GELU layers (6 x 2048^2 =
25.2M parameters by default), forward, backward and SGD on a batch of BATCH,
with torch's intra-op threads (2 here). Variants:

  none      no EMA
  sync      ema.torch.EMA(model, 0.999).update(): libema's ema_apply, blocking
  async     ema.torch.EMA(model, 0.999, device="cpu").update(): the parameters
            are copied into the context's staging buffers and the update runs
            on libema's thread while the next step computes
  foreach   torch._foreach_mul_ + torch._foreach_add_ on shadow copies

Prints the median step time of each and its ratio to "none".

usage: EMA_LIBRARY=build/libema.so PYTHONPATH=python python3 bench/bench_async_torch.py
       [--width W] [--layers L] [--batch B] [--steps N] [--rounds R] [--ema-threads T]
"""
import argparse
import statistics
import time

import torch

from ema.torch import EMA


def make_model(width, layers):
    torch.manual_seed(0)
    mods = []
    for _ in range(layers):
        mods += [torch.nn.Linear(width, width), torch.nn.GELU()]
    return torch.nn.Sequential(*mods)


def variant(kind, model, ema_threads):
    """The per-step EMA call of kind (None for none) and a finisher."""
    if kind == "none":
        return None, lambda: None
    if kind == "sync":
        e = EMA(model, 0.999, threads=ema_threads).register()
        return e.update, lambda: None
    if kind == "async":
        e = EMA(model, 0.999, device="cpu", threads=ema_threads).register()
        return e.update, e.wait
    if kind == "foreach":
        params = [p.detach() for p in model.parameters()]
        shadows = [p.clone() for p in params]

        def update():
            with torch.no_grad():
                torch._foreach_mul_(shadows, 0.999)
                torch._foreach_add_(shadows, params, alpha=0.001)
        return update, lambda: None
    raise ValueError(kind)


def run(kind, args):
    model = make_model(args.width, args.layers)
    opt = torch.optim.SGD(model.parameters(), lr=1e-4)
    x = torch.randn(args.batch, args.width)
    update, finish = variant(kind, model, args.ema_threads)

    def step():
        opt.zero_grad(set_to_none=True)
        model(x).square().mean().backward()
        opt.step()
        if update is not None:
            update()

    for _ in range(2):
        step()
    finish()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step()
    finish()
    return (time.perf_counter() - t0) / args.steps


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--width", type=int, default=2048)
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--ema-threads", type=int, default=1)
    args = ap.parse_args()
    kinds = ["none", "sync", "async", "foreach"]
    nparams = args.layers * (args.width * args.width + args.width)
    print(f"model: {args.layers} x Linear({args.width}, {args.width}), {nparams / 1e6:.1f}M parameters, "
          f"batch {args.batch}; torch threads {torch.get_num_threads()}, EMA threads {args.ema_threads}")
    times = {k: [] for k in kinds}
    for r in range(args.rounds):
        order = kinds if r % 2 == 0 else kinds[::-1]
        for k in order:
            times[k].append(run(k, args))
    base = statistics.median(times["none"])
    print(f"{'variant':8s} {'step ms (median)':>17s} {'min':>8s} {'max':>8s} {'ratio to none':>14s}")
    for k in kinds:
        m = statistics.median(times[k])
        print(f"{k:8s} {m * 1e3:17.1f} {min(times[k]) * 1e3:8.1f} {max(times[k]) * 1e3:8.1f} {m / base:14.3f}")


if __name__ == "__main__":
    main()
