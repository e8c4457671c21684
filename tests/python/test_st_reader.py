#!/usr/bin/python3
"""tests/python/test_st_reader.py: interop test of libema's safetensors layer
against the independent Python reader/writer in st_reader.py.

Usage: test_st_reader.py HELPER WORKDIR [CORPUS_DIR]
  HELPER      the st_pyhelper program (tests/python/st_helper.c)
  WORKDIR     a scratch directory (created, emptied)
  CORPUS_DIR  tests/fuzz/corpus by default

1. C writes files (st_write); Python reads them and compares every tensor
   (dtype, shape, bytes, values), the metadata, and the layout the reference
   writer produces (header order, space padding, 8-byte aligned data).
2. Python writes files its own way (json.dumps with spaces, \\u escapes,
   tensors in arbitrary order); C reads them (st_open/st_read) and must give
   back exactly what Python wrote.
3. Both readers must agree with the labels of the fuzz seed corpus: every
   valid_* seed accepted, every bad_* seed refused.
4. The Python reader's own strictness on a few hand-made hostile headers.
Exit 0 on success, 1 on failure, 77 (skip) when numpy is missing.
"""
import os
import shutil
import struct
import subprocess
import sys

try:
    import numpy as np
except ImportError:
    print("SKIP: numpy is not installed for", sys.executable)
    sys.exit(77)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st_reader  # noqa: E402

failures = []


def check(cond, msg):
    if not cond:
        failures.append(msg)
        print("FAIL:", msg)


def unhex(s):
    return b"" if s == "-" else bytes.fromhex(s)


def read_manifest(text):
    meta, tensors = [], []
    for line in text.splitlines():
        parts = line.split(" ")
        if parts[0] == "meta":
            meta.append((unhex(parts[1]).decode("utf-8"), unhex(parts[2]).decode("utf-8")))
        elif parts[0] == "tensor":
            ndim = int(parts[3])
            shape = tuple(int(x) for x in parts[4:4 + ndim])
            tensors.append((unhex(parts[1]).decode("utf-8"), parts[2], shape,
                            unhex(parts[4 + ndim])))
        else:
            raise ValueError("bad manifest line: %r" % line)
    return meta, tensors


def c_writes_python_reads(helper, work):
    subprocess.run([helper, "write", work], check=True)
    cases = sorted(f[:-len(".manifest")] for f in os.listdir(work) if f.endswith(".manifest"))
    check(len(cases) >= 6, "helper wrote %d cases" % len(cases))
    for case in cases:
        with open(os.path.join(work, case + ".manifest")) as fp:
            meta, tensors = read_manifest(fp.read())
        path = os.path.join(work, case + ".safetensors")
        try:
            f = st_reader.load(path)
        except st_reader.SafetensorsError as e:
            check(False, "%s: Python reader refused the C writer's file: %s" % (case, e))
            continue
        # metadata
        check(list(f.metadata.items()) == meta, "%s: metadata %r != %r" % (case, f.metadata, meta))
        check(f.has_metadata == bool(meta), "%s: __metadata__ presence" % case)
        # tensors
        check(sorted(f.tensors) == sorted(t[0] for t in tensors), "%s: tensor names" % case)
        for name, dtype, shape, data in tensors:
            t = f.tensors.get(name)
            if t is None:
                continue
            check(t.dtype == dtype, "%s/%r: dtype %s != %s" % (case, name, t.dtype, dtype))
            check(t.shape == shape, "%s/%r: shape %s != %s" % (case, name, t.shape, shape))
            check(f.raw(name) == data, "%s/%r: bytes differ" % (case, name))
            arr = f.array(name)
            bits, npdt = st_reader.DTYPES[dtype]
            if npdt is not None and dtype != "BOOL":
                want = np.frombuffer(data, dtype=npdt).reshape(shape)
                check(arr.shape == shape, "%s/%r: array shape" % (case, name))
                # bitwise (NaN payloads, -0.0)
                check(arr.tobytes() == want.tobytes(), "%s/%r: values differ" % (case, name))
            elif dtype == "BF16":
                want = np.frombuffer(data, dtype="<u2").reshape(shape)
                check(np.array_equal(arr, want), "%s/%r: bf16 bits differ" % (case, name))
                # as float32: bf16 is the upper half of a binary32
                as32 = (arr.astype(np.uint32).reshape(-1) << 16).view(np.float32).reshape(shape)
                check(as32.shape == shape, "%s/%r: bf16 as f32" % (case, name))
        # layout: the reference writer's
        hdr = f.header_bytes
        check(f.data_start % 8 == 0, "%s: data starts at %d" % (case, f.data_start))
        body = hdr.rstrip(b" ")
        check(body.endswith(b"}") and len(hdr) - len(body) < 8, "%s: padding" % case)
        check(b"\n" not in body and b": " not in body, "%s: compact JSON expected" % case)
        order = list(f.tensors)
        want_order = sorted(order, key=lambda n: (-st_reader.DTYPE_ORDER.index(f.tensors[n].dtype),
                                                  n.encode("utf-8")))
        check(order == want_order, "%s: header order %r != %r" % (case, order, want_order))
        off = 0
        for n in order:
            t = f.tensors[n]
            check(t.begin == off, "%s/%r: data order" % (case, n))
            off = t.end
            size = st_reader.DTYPES[t.dtype][0] // 8
            if size:
                check((f.data_start + t.begin) % size == 0, "%s/%r: misaligned" % (case, n))
        if meta:
            check(hdr.startswith(b'{"__metadata__":'), "%s: __metadata__ first" % case)


def python_writes_c_reads(helper, work):
    rng = np.random.default_rng(12345)
    cases = {
        "py_mixed": (
            [("z", "F32", (2, 3), rng.standard_normal(6).astype("<f4").tobytes()),
             ("a/b", "F64", (), np.array([np.pi], "<f8").tobytes()),
             ("\u00e9\U0001F600\u4e2d", "BF16", (4,), rng.integers(0, 65536, 4).astype("<u2").tobytes()),
             ("ctl\x01\"\\", "I64", (1, 1), np.array([[-5]], "<i8").tobytes()),
             ("empty", "F16", (0, 7), b""),
             ("b", "BOOL", (3,), bytes([1, 0, 1])),
             ("q", "U8", (5,), bytes(range(5)))],
            {"ema.decay": "0.9999", "\u20ac/\U0010FFFF": "x\ty\u0001\"\\/"}),
        "py_no_meta": ([("w", "I32", (2,), np.array([1, -1], "<i4").tobytes())], None),
        "py_empty_meta": ([], {}),
    }
    for name, (tensors, meta) in cases.items():
        for variant, kw in (("ascii", dict(ensure_ascii=True, separators=(", ", ": "))),
                            ("utf8", dict(ensure_ascii=False, separators=(",", ":")))):
            path = os.path.join(work, "%s_%s.safetensors" % (name, variant))
            st_reader.save(path, tensors, meta, **kw)
            st_reader.load(path)  # our own writer's output passes our own reader
            r = subprocess.run([helper, "dump", path], capture_output=True, text=True)
            check(r.returncode == 0, "%s: C reader refused: %s" % (path, r.stdout.strip()))
            if r.returncode != 0:
                continue
            got_meta, got = read_manifest(r.stdout)
            check(got_meta == list((meta or {}).items()),
                  "%s: metadata %r" % (path, got_meta))
            # the C reader keeps header order, which is ours here
            want = [(n, d, tuple(s), b) for n, d, s, b in tensors]
            check(got == want, "%s: tensors differ:\n%r\n%r" % (path, got, want))


def wrap_header_mode(blob):
    """A '.hdr' seed: JSON, optional NUL, data (see tests/fuzz/fuzz_safetensors.c)."""
    i = blob.find(b"\0")
    hdr, data = (blob, b"") if i < 0 else (blob[:i], blob[i + 1:])
    return struct.pack("<Q", len(hdr)) + hdr + data


def corpus_labels(corpus):
    seen = 0
    for fn in sorted(os.listdir(corpus)):
        if not fn.startswith(("valid_", "bad_")):
            continue
        with open(os.path.join(corpus, fn), "rb") as fp:
            blob = fp.read()
        if fn.endswith(".hdr"):
            blob = wrap_header_mode(blob)
        try:
            st_reader.parse(blob)
            ok = True
        except st_reader.SafetensorsError:
            ok = False
        check(ok == fn.startswith("valid_"), "corpus %s: Python reader says %s" %
              (fn, "valid" if ok else "invalid"))
        seen += 1
    check(seen > 20, "only %d labelled seeds in %s" % (seen, corpus))


def python_strictness():
    def blob(hdr, data=b""):
        return struct.pack("<Q", len(hdr)) + hdr + data

    one = b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}'
    st_reader.parse(blob(one, b"\0" * 4))
    bad = [
        one.replace(b"[1]", b"[-0]"), one.replace(b"[1]", b"[true]"),
        one.replace(b"[1]", b"[1.0]"), one.replace(b"[1]", b"[NaN]"),
        one.replace(b'"F32"', b'"F32","x":1'), one + b"\n", b" " + one,
        b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],'
        b'"data_offsets":[4,8]}}',
        b'{"__metadata__":{"k":"\\ud800"}}', b'{"__metadata__":{"k":"\\u0000"}}',
        b'{"__metadata__":{"k":1}}', b'{"__metadata__":null}',
        one.replace(b"[1]", b"[9007199254740993]"),
    ]
    for h in bad:
        try:
            st_reader.parse(blob(h, b"\0" * 4))
            check(False, "Python reader accepted %r" % h)
        except st_reader.SafetensorsError:
            pass


def xxh64_checks(helper, work):
    """The Python XXH64 against the xxHash reference vectors (the sanity
    buffer of xxHash's tests), and the checksum of a checkpoint libema
    wrote, recomputed here from the file's bytes."""
    p32, p64 = 2654435761, 11400714785074694797
    buf, g = bytearray(), p32
    for _ in range(2367):
        buf.append(g >> 56)
        g = (g * p64) & ((1 << 64) - 1)
    want = {(0, 0): 0xEF46DB3751D8E999, (1, 0): 0xE934A84ADB052768, (1, p32): 0x5014607643A9B4C3,
            (14, 0): 0x8282DCC4994E35C8, (14, p32): 0xC3BD6BF63DEB6DF0, (222, 0): 0xB641AE8CB691C174,
            (222, p32): 0x20CB8AB7AE10C14A, (2367, 0): 0xA82418DDEC0EA581,
            (2367, p32): 0xA36A93C18052673A}
    for (n, seed), h in want.items():
        got = st_reader.xxh64(buf[:n], seed)
        check(got == h, "xxh64 len %d seed %d: %016x != %016x" % (n, seed, got, h))
    check(st_reader.xxh64(b"abc") == 0x44BC2CF5AD770999, "xxh64('abc')")
    path = os.path.join(work, "ckpt.safetensors")
    subprocess.run([helper, "ckpt", path], check=True)
    f = st_reader.load(path)
    check(f.verify_xxh64() is True, "libema.xxh64 of a libema checkpoint does not verify in Python")
    blob = bytearray(f.blob)
    blob[-1] ^= 1
    check(st_reader.parse(bytes(blob)).verify_xxh64() is False, "a flipped data byte still verifies")


def main():
    if len(sys.argv) < 3:
        print(__doc__)
        return 2
    helper, work = sys.argv[1], sys.argv[2]
    here = os.path.dirname(os.path.abspath(__file__))
    corpus = sys.argv[3] if len(sys.argv) > 3 else os.path.join(here, "..", "fuzz", "corpus")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    c_writes_python_reads(helper, work)
    python_writes_c_reads(helper, work)
    corpus_labels(corpus)
    python_strictness()
    xxh64_checks(helper, work)
    if failures:
        print("%d failures" % len(failures))
        return 1
    print("python interop: all checks passed")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
