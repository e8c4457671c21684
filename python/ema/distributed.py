"""Sharded EMA over torch.distributed: each rank averages its own shard.

    import torch.distributed as dist
    from ema.distributed import ShardedEMA, TorchComm

    dist.init_process_group("gloo", ...)
    comm = TorchComm()                       # the default group, or TorchComm(group)
    ema = ShardedEMA(decay=0.999)
    # FSDP2 holds dim-0 chunks (torch.chunk) of every parameter:
    ema.track_shard("fc.weight", local_rows, global_shape=(4096, 1024), offsets=(lo, 0))
    ...
    ema.apply()                              # local: no communication
    ema.save_sharded("ckpt", comm)           # collective: every rank calls it
    ema.load_sharded("ckpt", comm)           # any world size wrote it

The files are those of the C API (docs/distributed.md): one safetensors file per rank
with torch.distributed.checkpoint's DCP_SHARDING_INFO, and DIR/manifest.json written
last. `ema consolidate DIR -o OUT.safetensors` turns them into one checkpoint.

TorchComm moves only small byte blocks (registrations, checksums) through the process
group, on CPU tensors: a gloo group, or any group whose backend takes CPU tensors.
"""
import ctypes

from . import _arrays, _lib
from ._context import Context, Entry, encode_name, fspath
from .errors import AlreadyExistsError, InvalidArgumentError

_l = _lib.lib
EMA_OK, EMA_E_IO = 0, 7

_ALLGATHER = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p)
_BROADCAST = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
_BARRIER = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p)


class _Comm(ctypes.Structure):
    _fields_ = [("rank", ctypes.c_int), ("size", ctypes.c_int), ("user", ctypes.c_void_p),
                ("allgather", _ALLGATHER), ("broadcast", _BROADCAST), ("barrier", _BARRIER),
                ("reserved", ctypes.c_void_p * 4)]


_i64p = ctypes.POINTER(ctypes.c_int64)
for _name, _args in {
    "ema_track_shard": [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_int, _i64p, _i64p,
                        _i64p],
    "ema_save_sharded": [ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(_Comm)],
    "ema_load_sharded": [ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(_Comm)],
    "ema_load_sharded_averages_into_model": [ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(_Comm)],
    "ema_consolidate": [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_char_p,
                        ctypes.c_size_t],
}.items():
    _fn = getattr(_l, _name)
    _fn.restype = ctypes.c_int
    _fn.argtypes = _args
_l.ema_num_updates.restype = ctypes.c_int64
_l.ema_num_updates.argtypes = [ctypes.c_void_p]


class TorchComm:
    """An ema_comm over a torch.distributed process group (None: the default)."""

    def __init__(self, group=None):
        import torch
        import torch.distributed as dist
        self._torch, self._dist, self.group = torch, dist, group
        self.error = None  # the exception a collective raised, if any
        self._c = _Comm(dist.get_rank(group), dist.get_world_size(group), None, _ALLGATHER(self._allgather),
                        _BROADCAST(self._broadcast), _BARRIER(self._barrier))

    def _bytes(self, ptr, n):
        t = self._torch.empty(n, dtype=self._torch.uint8)
        if n:
            ctypes.memmove(t.data_ptr(), ptr, n)
        return t

    def _guard(self, fn):
        try:
            fn()
            return EMA_OK
        except Exception as e:  # a failed collective fails the sharded call, never crashes C
            self.error = e
            return EMA_E_IO

    def _allgather(self, user, send, n, recv):
        def run():
            out = [self._torch.empty(n, dtype=self._torch.uint8) for _ in range(self._c.size)]
            self._dist.all_gather(out, self._bytes(send, n), group=self.group)
            for r, t in enumerate(out):
                if n:
                    ctypes.memmove(recv + r * n, t.data_ptr(), n)
        return self._guard(run)

    def _broadcast(self, user, buf, n, root):
        def run():
            t = self._bytes(buf, n)
            src = root if self.group is None else self._dist.get_global_rank(self.group, root)
            self._dist.broadcast(t, src=src, group=self.group)
            if n:
                ctypes.memmove(buf, t.data_ptr(), n)
        return self._guard(run)

    def _barrier(self, user):
        return self._guard(lambda: self._dist.barrier(group=self.group))

    @property
    def rank(self):
        return self._c.rank

    @property
    def size(self):
        return self._c.size


def _comm_arg(comm):
    if comm is None:
        return None
    if not isinstance(comm, TorchComm):
        raise InvalidArgumentError(f"comm must be a TorchComm or None, got {type(comm).__name__}")
    return ctypes.byref(comm._c)


def _ints(seq, what):
    try:
        v = [int(x) for x in seq]
    except TypeError as e:
        raise InvalidArgumentError(f"{what} must be a sequence of integers") from e
    return (ctypes.c_int64 * max(len(v), 1))(*v), len(v)


class ShardedEMA(Context):
    """An EMA of shards: track_shard registers this rank's box of a global tensor;
    tensors registered with track() are replicated (every rank holds all of them).
    apply(), swap(), average() and the rest act on this rank's boxes only."""

    def track_shard(self, name, obj, global_shape, offsets):
        """Register obj (this rank's box, C-contiguous, on the CPU) of the global tensor
        name, at offsets in it. Its shape is the box's shape."""
        bname = encode_name(name, "tensor name")
        if name in self.entries:
            raise AlreadyExistsError(f"{name!r} is already registered")
        desc = _arrays.describe(obj, repr(name))
        _arrays.check_dims(desc, repr(name))
        g, ng = _ints(global_shape, "global_shape")
        o, no = _ints(offsets, "offsets")
        if ng != len(desc.shape) or no != len(desc.shape):
            raise InvalidArgumentError(f"{name!r}: global_shape and offsets need {len(desc.shape)} entries, as the "
                                       f"box has")
        local = _arrays.shape_arg(desc.shape)
        code = desc.dtype if desc.dtype is not None else -1
        with self.h.lock:
            self.h.check(_l.ema_track_shard(self.h.ptr, bname, ctypes.c_void_p(desc.ptr or None), code,
                                            len(desc.shape), g, o, local))
            self.h.keep.append(desc.keep)
            sd = ctypes.c_int(code)
            _l.ema_average(self.h.ptr, bname, ctypes.byref(sd))
        self.entries[name] = Entry(name, bname, desc, True, sd.value)
        return self.entries[name]

    def apply(self):
        self.apply_all()

    def average(self, name):
        """This rank's box of the average of name, a torch tensor over the library's memory."""
        return self.average_torch(name)

    def _sharded(self, fn, path, comm):
        c = _comm_arg(comm)
        with self.h.lock:
            st = fn(self.h.ptr, fspath(path), c)
        if st != EMA_OK and comm is not None and comm.error is not None:
            err, comm.error = comm.error, None
            try:
                self.h.check(st)
            except Exception as e:
                raise e from err
        self.h.check(st)

    def save_sharded(self, path, comm=None):
        """Collective: every rank calls it. comm None: a world of one."""
        self._sharded(_l.ema_save_sharded, path, comm)

    def load_sharded(self, path, comm=None):
        """Collective. Loads at any world size; a failure changes nothing on any rank."""
        self._sharded(_l.ema_load_sharded, path, comm)
        n = _l.ema_num_updates(self.h.ptr)  # the library took it from the checkpoint: mirror it
        self._num_updates = None if n < 0 else int(n)

    def load_sharded_averages_into_model(self, path, comm=None):
        self._sharded(_l.ema_load_sharded_averages_into_model, path, comm)


def consolidate(path, out):
    """Write the sharded checkpoint at path as one unsharded checkpoint at out (what
    ema_save of the same model writes), streaming: memory stays a few MiB."""
    err = ctypes.create_string_buffer(1024)
    st = _l.ema_consolidate(fspath(path), fspath(out), None, None, err, len(err))
    if st != EMA_OK:
        from .errors import error_for_status
        raise error_for_status(st, err.value.decode("utf-8", "replace"))
