"""Moving an EMA's state between the library and torch tensors.

The EMA state is whatever the library's checkpoint holds besides the
model's own tensors (each average "<n>/<member>", zero-debias counters, the
metadata), so the library's writer and loader (validation, all or nothing)
define it, not a copy of their rules here. With the in-memory checkpoints
(ema_save_buffer / ema_load_buffer) nothing touches a file; with an older
library the checkpoint goes through a temporary file (in /dev/shm when
there is one).

Not public: used by ema.torch.
"""
import ctypes
import json
import os
import struct
import tempfile

import torch

from . import _lib
from .errors import MismatchError
from .files import open_file, write_safetensors

_ST_TORCH = {"F32": torch.float32, "F64": torch.float64, "F16": torch.float16, "BF16": torch.bfloat16,
             "I32": torch.int32, "I64": torch.int64}
_TORCH_ST = {v: k for k, v in _ST_TORCH.items()}
_CHECKSUMS = ("libema.checksum", "libema.xxh64")


def _carried(key):
    """Whether a metadata key of a context's checkpoint moves with its EMA
    state: not the checksums (they cover the old bytes) and not the policy
    records ("ema.policy.<name>"), which the receiving context's own
    registration defines."""
    return key not in _CHECKSUMS and not key.startswith("ema.policy.")


def torch_dtype(name):
    try:
        return _ST_TORCH[name]
    except KeyError:
        raise MismatchError(f"unexpected dtype {name} in an EMA checkpoint") from None


def in_memory():
    return _lib.has("ema_save_buffer") and _lib.has("ema_load_buffer")


def _tmpdir():
    shm = "/dev/shm"
    d = shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else None
    return tempfile.TemporaryDirectory(prefix="libema-", dir=d)


def state_only():
    """The library saves and loads the EMA state without the model tensors."""
    return _lib.has("ema_save_state_buffer") and _lib.has("ema_load_state_buffer")


def collect(ctx, skip):
    """({key: new tensor}, {metadata}) of ctx's checkpoint, without the keys
    in skip (the model's own tensors) and the checksums."""
    ctx.check_storage()
    if state_only():
        if _lib.has("ema_save_state_writer") and not _small_tensors(ctx):
            # large tensors: each into memory of its own (torch's allocator,
            # as a clone), not one block as large as the state; no checksum
            # (EMA_SAVE_NO_CHECKSUM): nothing at rest to verify
            return _collect_writer(ctx, skip, lambda h, fn, user: _lib.lib.ema_save_state_writer(h, 1, fn, user))
        return _collect_state(ctx, skip)
    if in_memory() and (not _lib.has("ema_save_writer") or _small_tensors(ctx)):
        return _collect_buffer(ctx, skip)
    if _lib.has("ema_save_writer"):
        return _collect_writer(ctx, skip)
    out = {}
    with _tmpdir() as d:
        p = os.path.join(d, "state.safetensors")
        ctx.save(p)
        with open_file(p, bf16="bits") as f:
            meta = {k: v for k, v in f.metadata.items() if _carried(k)}
            for key in f.keys():
                if key in skip:
                    continue
                inf = f.info(key)
                t = torch.empty(inf.shape, dtype=torch_dtype(inf.dtype))
                if inf.nbytes:
                    f._read_into(key, 0, t.data_ptr(), inf.nbytes)
                out[key] = t
    return out, meta


_WRITER = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t)


class _Sink:
    """Receives a checkpoint streamed by ema_save_writer and keeps only the
    tensors wanted, each copied once into a new torch tensor."""

    def __init__(self, skip):
        self.skip = skip
        self.head = bytearray()
        self.header = None
        self.pos = 0          # bytes of the data section received
        self.spans = []       # (start, end, flat uint8 view of the destination), by offset
        self.i = 0
        self.out, self.meta = {}, {}
        self.error = None

    def _start(self, hlen):
        header = json.loads(bytes(self.head[8:8 + hlen]).decode("utf-8"))
        self.meta = {k: v for k, v in header.pop("__metadata__", {}).items() if _carried(k)}
        for key, inf in header.items():
            if key in self.skip:
                continue
            a, b = inf["data_offsets"]
            t = torch.empty(inf["shape"], dtype=torch_dtype(inf["dtype"]))
            self.out[key] = t
            if b > a:
                self.spans.append((a, b, t.reshape(-1).view(torch.uint8)))
        self.spans.sort(key=lambda x: x[0])
        self.header = header
        rest = bytes(self.head[8 + hlen:])
        self.head = None
        if rest:
            t = torch.empty(len(rest), dtype=torch.uint8)
            ctypes.memmove(t.data_ptr(), rest, len(rest))
            self._data(t)

    def _data(self, chunk):
        n = chunk.numel()
        lo, hi = self.pos, self.pos + n
        while self.i < len(self.spans) and self.spans[self.i][1] <= lo:
            self.i += 1
        j = self.i
        while j < len(self.spans) and self.spans[j][0] < hi:
            a, b, dst = self.spans[j]
            s0, s1 = max(a, lo), min(b, hi)
            dst[s0 - a:s1 - a].copy_(chunk[s0 - lo:s1 - lo])
            j += 1
        self.pos = hi

    def __call__(self, user, data, length):
        try:
            if not length:
                return 0
            if self.header is None:
                self.head += ctypes.string_at(data, length)
                if len(self.head) >= 8:
                    hlen = struct.unpack_from("<Q", self.head, 0)[0]
                    if len(self.head) >= 8 + hlen:
                        self._start(hlen)
                return 0
            raw = (ctypes.c_uint8 * length).from_address(data)
            self._data(torch.frombuffer(raw, dtype=torch.uint8))
            return 0
        except BaseException as e:  # reported after the call; stops the save
            self.error = e
            return 1


def _small_tensors(ctx):
    """Many small tensors: one buffer and views beat a callback per tensor."""
    n = len(ctx.entries)
    return n > 0 and sum(e.desc.nbytes for e in ctx.entries.values()) / n < (256 << 10)


def _collect_writer(ctx, skip, save=None):
    """Each tensor streamed by ema_save_writer (or save, the state writer)
    into a new tensor of its own."""
    sink = _Sink(skip)
    fn = _WRITER(sink)
    with ctx.h.lock:
        st = (save or _lib.lib.ema_save_writer)(ctx.h.ptr, fn, None)
    if sink.error is not None:
        raise sink.error
    ctx.h.check(st)
    return sink.out, sink.meta


def _collect_buffer(ctx, skip):
    lib = _lib.lib
    buf, n = ctypes.c_void_p(), ctypes.c_size_t()
    with ctx.h.lock:
        ctx.h.check(lib.ema_save_buffer(ctx.h.ptr, ctypes.byref(buf), ctypes.byref(n)))
    try:
        raw = (ctypes.c_uint8 * n.value).from_address(buf.value)
        data = torch.frombuffer(raw, dtype=torch.uint8) if n.value else torch.empty(0, dtype=torch.uint8)
        hlen = struct.unpack_from("<Q", raw, 0)[0]
        header = json.loads(ctypes.string_at(buf.value + 8, hlen).decode("utf-8"))
        base = 8 + hlen
        meta = {k: v for k, v in header.pop("__metadata__", {}).items() if _carried(k)}
        # one copy per dtype (torch.cat of the wanted byte ranges), every
        # tensor a view of it: fast for many small tensors, and torch.save
        # sees one storage per dtype
        groups = {}
        for key, inf in header.items():
            if key not in skip:
                groups.setdefault(inf["dtype"], []).append((key, inf))
        out = {}
        for dname, items in groups.items():
            dt = torch_dtype(dname)
            parts = [data[base + inf["data_offsets"][0]:base + inf["data_offsets"][1]] for _, inf in items]
            block = torch.cat(parts).view(dt) if parts else torch.empty(0, dtype=dt)
            pos = 0
            for key, inf in items:
                n = 1
                for d in inf["shape"]:
                    n *= d
                out[key] = block[pos:pos + n].view(inf["shape"])
                pos += n
        return out, {k: v for k, v in meta.items()}
    finally:
        lib.ema_buffer_free(buf)


class _Owner:
    """Frees a buffer of the library when the last tensor viewing it is gone
    (held by the ctypes array that torch.frombuffer keeps alive)."""

    __slots__ = ("ptr",)

    def __init__(self, ptr):
        self.ptr = ptr

    def __del__(self):
        _lib.lib.ema_buffer_free(self.ptr)


def _collect_state(ctx, skip):
    """The EMA state from one ema_save_state_buffer: every tensor a zero-copy
    view of the library's buffer (one copy of the state in all, made by the
    library; the buffer is freed with the last view). A run of tensors of
    one dtype becomes views by one torch.split; the header's tensor part is
    parsed once per registration (only its metadata changes between calls)."""
    buf, n = ctypes.c_void_p(), ctypes.c_size_t()
    with ctx.h.lock:
        ctx.h.check(_lib.lib.ema_save_state_buffer(ctx.h.ptr, ctypes.byref(buf), ctypes.byref(n)))
    owner = _Owner(buf.value)
    raw = (ctypes.c_uint8 * n.value).from_address(buf.value)
    raw._owner = owner   # the array (kept by every view) keeps the buffer
    hlen = struct.unpack_from("<Q", raw, 0)[0]
    text = ctypes.string_at(buf.value + 8, hlen).decode("utf-8")   # one copy (slicing raw makes a list)
    meta, runs = _layout(ctx, text, skip)
    data = torch.frombuffer(raw, dtype=torch.uint8)
    base = 8 + hlen
    out = {}
    # torch.save refuses views of one storage as several dtypes: the dtype
    # with the most bytes stays a view of the buffer, the others are copied
    major = max(((end - a0, dt) for a0, end, dt, *_ in runs), key=lambda x: x[0], default=(0, None))[1]
    for a0, end, dt, size, counts, keys, shaped in runs:
        span = data[base + a0:base + end]
        if dt is not major or (base + a0) % size:   # another dtype, or not aligned for a view
            span = span.clone()
        parts = torch.split(span.view(dt), counts)
        out.update(zip(keys, parts))
        for i, shape in shaped:
            out[keys[i]] = parts[i].view(shape)
    return out, meta


_META_HEAD = '{"__metadata__":'
_DECODER = json.JSONDecoder()


def _layout(ctx, text, skip):
    """({metadata}, runs) of a state buffer's header text; runs: (start, end,
    dtype, element size, [element counts], [keys], [(index, shape)] of the
    tensors that are not 1-D), for runs of one dtype back to back."""
    tail = None
    if text.startswith(_META_HEAD):
        meta, at = _DECODER.raw_decode(text, len(_META_HEAD))
        tail = text[at:]
        cached = getattr(ctx, "_state_layout", None)
        if cached is not None and cached[0] == tail and cached[1] == skip:
            return _carried_meta(meta), cached[2]
        header = json.loads("{" + tail[1:]) if tail.startswith(",") else {}
    else:
        header = json.loads(text)
        meta = header.pop("__metadata__", {})
    items = sorted(((inf["data_offsets"][0], inf["data_offsets"][1], key, inf["dtype"], inf["shape"])
                    for key, inf in header.items() if key not in skip))
    runs = []
    i = 0
    while i < len(items):
        a0, end, _, dname, _ = items[i]
        j = i + 1
        while j < len(items) and items[j][3] == dname and items[j][0] == end:
            end = items[j][1]
            j += 1
        dt = torch_dtype(dname)
        size = torch.empty(0, dtype=dt).element_size()
        run = items[i:j]
        runs.append((a0, end, dt, size, [(b - a) // size for a, b, *_ in run], [r[2] for r in run],
                     [(k, r[4]) for k, r in enumerate(run) if len(r[4]) != 1]))
        i = j
    if tail is not None:
        ctx._state_layout = (tail, frozenset(skip), runs)
    return _carried_meta(meta), runs


def _carried_meta(meta):
    return {k: v for k, v in meta.items() if _carried(k)}


_data_ptr = torch.Tensor.data_ptr


def _load_parts(ctx, head, values, sizes):
    """ema_load_state_parts: every tensor (contiguous, on the CPU) is a part
    of the checkpoint where it is: nothing is copied before the library has
    validated the whole state, and then only into the averages."""
    n = len(values)
    parts = (ctypes.c_size_t * (2 * n + 2))()   # ema_bytes[n]: {data, len} pairs (+1 for n == 0)
    parts[0:2 * n:2] = list(map(_data_ptr, values))
    parts[1:2 * n:2] = sizes
    with ctx.h.lock:
        ctx.h.check(_lib.lib.ema_load_state_parts(ctx.h.ptr, head, len(head), parts, n))


def load(ctx, entries, meta, layout=None):
    """ema_load of a checkpoint holding entries {key: contiguous tensor} and
    meta {str: str}. layout: an object that stands for the keys, dtypes and
    shapes of entries, in order (the caller checked them against it): the
    header's tensor part is then built once per layout."""
    if not in_memory():
        with _tmpdir() as d:
            p = os.path.join(d, "state.safetensors")
            write_safetensors(p, entries, meta)
            ctx.load(p)
        return
    cached = getattr(ctx, "_load_layout", None)
    if layout is not None and cached is not None and cached[0] is layout:
        part, offset, runs, sizes = cached[1:]
    else:
        header, offset, runs, sizes = {}, 0, [], []
        for i, (key, t) in enumerate(entries.items()):
            nbytes = t.numel() * t.element_size()
            header[key] = {"dtype": _TORCH_ST[t.dtype], "shape": list(t.shape),
                           "data_offsets": [offset, offset + nbytes]}
            if runs and runs[-1][2] == t.dtype:
                runs[-1][1], runs[-1][4] = offset + nbytes, i + 1
            else:
                runs.append([offset, offset + nbytes, t.dtype, i, i + 1])
            sizes.append(nbytes)
            offset += nbytes
        part = json.dumps(header, separators=(",", ":"))[1:-1]
        if layout is not None:
            ctx._load_layout = (layout, part, offset, runs, sizes)
    text = "{" + part
    if meta:
        text += ("," if part else "") + '"__metadata__":' + json.dumps(
            {str(k): str(v) for k, v in meta.items()}, separators=(",", ":"))
    h = (text + "}").encode("utf-8")
    h += b" " * (-len(h) % 8)
    if state_only() and _lib.has("ema_load_state_parts"):
        _load_parts(ctx, struct.pack("<Q", len(h)) + h, list(entries.values()), sizes)
        ctx.after_load(meta)
        return
    total = 8 + len(h) + offset
    buf = torch.empty(total, dtype=torch.uint8)
    head = struct.pack("<Q", len(h)) + h
    ctypes.memmove(buf.data_ptr(), head, len(head))
    base = 8 + len(h)
    # one torch.cat per run of one dtype, straight into the buffer seen in that dtype
    values = list(entries.values())
    for a, b, dt, i, j in runs:
        size = values[i].element_size()
        part_ts = [t if t.dim() == 1 else t.view(-1) for t in values[i:j]]
        if (base + a) % size == 0:
            torch.cat(part_ts, out=buf[base + a:base + b].view(dt))
        else:   # not aligned for that dtype: as bytes
            torch.cat([t.view(torch.uint8) for t in part_ts], out=buf[base + a:base + b])
    fn = _lib.lib.ema_load_state_buffer if state_only() else _lib.lib.ema_load_buffer
    with ctx.h.lock:
        ctx.h.check(fn(ctx.h.ptr, ctypes.c_void_p(buf.data_ptr()), total))
    ctx.after_load(meta)
