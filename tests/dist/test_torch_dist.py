"""tests/dist/test_torch_dist.py: the sharded EMA from Python over torch.distributed.

4 gloo processes on localhost hold dim-0 shards of each parameter as FSDP2 does
(torch.chunk: uneven, the last ranks possibly empty), train, and save; 2 processes
load that checkpoint and go on; 1 process loads theirs, and consolidate writes what
ema_save of the unsharded run writes. Every rank checks its boxes bit for bit against
an unsharded run it does itself. Run: python3 tests/dist/test_torch_dist.py (with
EMA_LIBRARY and PYTHONPATH=python); exits 77 when torch with gloo is missing.
"""
import os
import sys
import tempfile

try:
    import torch
    import torch.distributed as dist
    import torch.multiprocessing as mp
except ImportError:
    print("SKIP: torch is needed")
    sys.exit(77)
if not dist.is_available() or not dist.is_gloo_available():
    print("SKIP: torch.distributed with gloo is needed")
    sys.exit(77)

from ema.distributed import ShardedEMA, TorchComm, consolidate  # noqa: E402

SHAPES = {"fc.weight": ((10, 6), torch.float32), "emb.weight": ((3, 4), torch.float32),
          "attn.weight": ((5, 4), torch.bfloat16)}
BIAS = ((7,), torch.float32)  # replicated


def model_at(step):
    g = torch.Generator().manual_seed(1000 + step)
    p = {n: torch.randn(s, generator=g).to(dt) for n, (s, dt) in SHAPES.items()}
    p["bias"] = torch.randn(BIAS[0], generator=g)
    return p


def fsdp2_chunk(t, world, rank):
    """FSDP2's dim-0 shard: torch.chunk; ranks past the last chunk hold 0 rows."""
    chunks = torch.chunk(t, world, dim=0)
    off = sum(c.shape[0] for c in chunks[:rank])
    if rank < len(chunks):
        return chunks[rank].clone(), off
    return t[t.shape[0]:].clone(), t.shape[0]


class Run:
    def __init__(self, world, rank, sharded=True):
        self.world, self.rank = world, rank
        self.ema = ShardedEMA(decay=0.9, num_updates=0)
        self.params, self.offsets = {}, {}
        full = model_at(0)
        for name, t in full.items():
            if name == "bias" or not sharded:
                self.params[name], self.offsets[name] = t.clone(), 0
                self.ema.track(name, self.params[name])
            else:
                self.params[name], self.offsets[name] = fsdp2_chunk(t, world, rank)
                self.ema.track_shard(name, self.params[name], t.shape, (self.offsets[name],) + (0,) * (t.dim() - 1))

    def step(self, s):
        full = model_at(s)
        for name, p in self.params.items():
            o = self.offsets[name]
            p.copy_(full[name][o:o + p.shape[0]])
        self.ema.num_updates = s
        self.ema.apply()

    def check(self, ref, when):
        for name, p in self.params.items():
            o, n = self.offsets[name], p.shape[0]
            mine, theirs = self.ema.average(name), ref.ema.average(name)[o:o + n]
            bits = torch.int16 if mine.dtype == torch.bfloat16 else torch.int32
            assert torch.equal(mine.view(bits), theirs.view(bits)), f"rank {self.rank}: {name} differs {when}"
            assert torch.equal(p, ref.params[name][o:o + n]), f"rank {self.rank}: model {name} differs {when}"


def reference(upto):
    ref = Run(1, 0, sharded=False)
    for s in range(1, upto + 1):
        ref.step(s)
    return ref


def worker(rank, world, tmp):
    """Ranks 0-3 train and save at 4; then ranks 0-1 form a group of 2 (the
    processes are reused: importing torch is the slow part) that loads it."""
    dist.init_process_group("gloo", init_method=f"file://{tmp}/pg4", rank=rank, world_size=world)
    run = Run(world, rank)
    for s in range(1, 6):
        run.step(s)
    run.check(reference(5), "after 5 steps at 4 ranks")
    run.ema.save_sharded(f"{tmp}/ck4", TorchComm())
    dist.barrier()
    dist.destroy_process_group()
    if rank >= 2:
        return
    dist.init_process_group("gloo", init_method=f"file://{tmp}/pg2", rank=rank, world_size=2)
    comm = TorchComm()
    run = Run(2, rank)
    run.ema.load_sharded(f"{tmp}/ck4", comm)
    run.check(reference(5), "after loading at 2 ranks")
    for s in range(6, 8):
        run.step(s)
    run.check(reference(7), "after 2 more steps at 2 ranks")
    run.ema.save_sharded(f"{tmp}/ck2", comm)
    dist.barrier()
    dist.destroy_process_group()


def main():
    with tempfile.TemporaryDirectory() as tmp:
        mp.spawn(worker, args=(4, tmp), nprocs=4, join=True)
        names = sorted(os.listdir(f"{tmp}/ck4"))
        assert "manifest.json" in names and len([n for n in names if n.endswith(".safetensors")]) == 4, names
        one = Run(1, 0)  # one process, no process group: comm None
        one.ema.load_sharded(f"{tmp}/ck2")
        ref = reference(7)
        one.check(ref, "after loading at 1 rank")
        consolidate(f"{tmp}/ck2", f"{tmp}/cons.safetensors")
        ref.ema.save(f"{tmp}/ref.safetensors")
        with open(f"{tmp}/cons.safetensors", "rb") as a, open(f"{tmp}/ref.safetensors", "rb") as b:
            assert a.read() == b.read(), "consolidate differs from ema_save of the unsharded run"
    print("test_torch_dist: 4 -> 2 -> 1 ranks over gloo, bit for bit; consolidate == ema_save")


if __name__ == "__main__":
    main()
