"""tests/python/st_reader.py: an independent safetensors reader (and a small
writer) in Python, written from the format description, used to check
libema's C reader and writer against a second implementation.

Only the standard library and numpy. Nothing here is shared with the C code.

Format: 8-byte little-endian N; N bytes of UTF-8 JSON; the data. The JSON
object maps tensor names to {"dtype", "shape", "data_offsets"} and may hold
"__metadata__", an object of strings. The reader applies the same strict
profile as libema (see src/io/safetensors.h): header <= 100,000,000 bytes;
first byte '{'; only spaces after the object; no duplicate keys; no unknown
fields; integers only (no floats, no booleans), 0 <= n <= 2**53; strings
valid Unicode without U+0000; at most 64 dimensions; tensors sorted by
(begin, end) contiguous from 0; size = product(shape) * bits / 8 exactly, in
whole bytes, with 64-bit overflow refused; the data ends at the last tensor.
"""
import json
import struct

import numpy as np

MAX_HEADER = 100_000_000
MAX_INT = 2 ** 53
MAX_RANK = 64
U64 = 2 ** 64

# name: (bits, numpy dtype or None when numpy has no such type: then the
# tensor is returned as raw little-endian storage: uint16 bit patterns for
# BF16, uint8 bytes for the 8-bit floats and sub-byte types)
DTYPES = {
    "BOOL": (8, np.dtype(np.bool_)),
    "F4": (4, None),
    "F6_E2M3": (6, None),
    "F6_E3M2": (6, None),
    "U8": (8, np.dtype(np.uint8)),
    "I8": (8, np.dtype(np.int8)),
    "F8_E5M2": (8, None),
    "F8_E4M3": (8, None),
    "F8_E8M0": (8, None),
    "I16": (16, np.dtype("<i2")),
    "U16": (16, np.dtype("<u2")),
    "F16": (16, np.dtype("<f2")),
    "BF16": (16, None),
    "I32": (32, np.dtype("<i4")),
    "U32": (32, np.dtype("<u4")),
    "F32": (32, np.dtype("<f4")),
    "C64": (64, np.dtype("<c8")),
    "F64": (64, np.dtype("<f8")),
    "I64": (64, np.dtype("<i8")),
    "U64": (64, np.dtype("<u8")),
}
# The reference's dtype order ("increasing alignment"); writers sort by it,
# largest first, then by name.
DTYPE_ORDER = list(DTYPES)


# XXH64, from the xxHash specification (doc/xxhash_spec.md), independently of
# the C implementation in src/common/xxh64.c.
_M64 = (1 << 64) - 1
_P1, _P2, _P3 = 0x9E3779B185EBCA87, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9
_P4, _P5 = 0x85EBCA77C2B2AE63, 0x27D4EB2F165667C5


def _rotl(x, r):
    return ((x << r) | (x >> (64 - r))) & _M64


def _round(acc, lane):
    return (_rotl((acc + lane * _P2) & _M64, 31) * _P1) & _M64


def xxh64(data, seed=0):
    """XXH64 of bytes data with seed, as an int."""
    data = bytes(data)
    n, i = len(data), 0
    if n >= 32:
        v = [(seed + _P1 + _P2) & _M64, (seed + _P2) & _M64, seed & _M64, (seed - _P1) & _M64]
        while i + 32 <= n:
            for j in range(4):
                v[j] = _round(v[j], int.from_bytes(data[i + 8 * j:i + 8 * j + 8], "little"))
            i += 32
        acc = (_rotl(v[0], 1) + _rotl(v[1], 7) + _rotl(v[2], 12) + _rotl(v[3], 18)) & _M64
        for j in range(4):
            acc = (((acc ^ _round(0, v[j])) * _P1) + _P4) & _M64
    else:
        acc = (seed + _P5) & _M64
    acc = (acc + n) & _M64
    while i + 8 <= n:
        acc ^= _round(0, int.from_bytes(data[i:i + 8], "little"))
        acc = (_rotl(acc, 27) * _P1 + _P4) & _M64
        i += 8
    if i + 4 <= n:
        acc ^= (int.from_bytes(data[i:i + 4], "little") * _P1) & _M64
        acc = (_rotl(acc, 23) * _P2 + _P3) & _M64
        i += 4
    while i < n:
        acc ^= (data[i] * _P5) & _M64
        acc = (_rotl(acc, 11) * _P1) & _M64
        i += 1
    acc ^= acc >> 33
    acc = (acc * _P2) & _M64
    acc ^= acc >> 29
    acc = (acc * _P3) & _M64
    acc ^= acc >> 32
    return acc


class SafetensorsError(ValueError):
    pass


class Tensor:
    def __init__(self, name, dtype, shape, begin, end):
        self.name, self.dtype, self.shape = name, dtype, tuple(shape)
        self.begin, self.end = begin, end

    @property
    def nbytes(self):
        return self.end - self.begin


class SafeFile:
    """A parsed file: tensors in header order, metadata, raw bytes."""

    def __init__(self, blob, header_len, tensors, metadata, has_metadata):
        self.blob = blob
        self.header_len = header_len
        self.data_start = 8 + header_len
        self.tensors = tensors  # dict name -> Tensor, header order
        self.metadata = metadata  # dict, header order
        self.has_metadata = has_metadata

    @property
    def data_section(self):
        """Every byte after the header: what libema.xxh64 covers."""
        return self.blob[self.data_start:]

    def verify_xxh64(self):
        """True when __metadata__ "libema.xxh64" (16 hex digits) is the
        XXH64 (seed 0) of the data section; None when the key is absent."""
        rec = self.metadata.get("libema.xxh64")
        if rec is None:
            return None
        return len(rec) == 16 and rec == "%016x" % xxh64(self.data_section)

    @property
    def header_bytes(self):
        return self.blob[8:self.data_start]

    def raw(self, name):
        t = self.tensors[name]
        return self.blob[self.data_start + t.begin:self.data_start + t.end]

    def array(self, name):
        """The tensor as a numpy array of its shape (BF16 as uint16 bit
        patterns, F8_*/F4/F6_* as the raw uint8 bytes)."""
        t = self.tensors[name]
        raw = self.raw(name)
        bits, npdt = DTYPES[t.dtype]
        if t.dtype == "BF16":
            return np.frombuffer(raw, dtype="<u2").reshape(t.shape)
        if npdt is None:
            return np.frombuffer(raw, dtype=np.uint8).copy()
        if t.dtype == "BOOL":
            return np.frombuffer(raw, dtype=np.uint8).astype(np.bool_).reshape(t.shape)
        return np.frombuffer(raw, dtype=npdt).reshape(t.shape)


def _no_duplicates(pairs):
    out = {}
    for k, v in pairs:
        if k in out:
            raise SafetensorsError("duplicate key %r" % k)
        out[k] = v
    return out


def _no_float(s):
    raise SafetensorsError("number with a fraction or exponent: %s" % s)


def _int(s):
    if s.startswith("-"):
        raise SafetensorsError("negative number %s" % s)
    return int(s)


def _no_constant(s):
    raise SafetensorsError("non-JSON constant %s" % s)


def _check_str(s, what):
    if "\x00" in s:
        raise SafetensorsError("%s contains U+0000" % what)
    try:
        s.encode("utf-8")  # lone surrogates from \\u escapes fail here
    except UnicodeEncodeError:
        raise SafetensorsError("%s contains a lone surrogate" % what)


def _check_uint(x, what):
    if type(x) is not int or x < 0 or x > MAX_INT:
        raise SafetensorsError("%s: %r is not an integer in [0, 2**53]" % (what, x))
    return x


def parse(blob):
    """Parse and validate a whole file held in bytes; returns a SafeFile."""
    blob = bytes(blob)
    if len(blob) < 8:
        raise SafetensorsError("file shorter than 8 bytes")
    (n,) = struct.unpack("<Q", blob[:8])
    if n > MAX_HEADER:
        raise SafetensorsError("header length %d over the cap" % n)
    if n > len(blob) - 8:
        raise SafetensorsError("header length %d past the end of the file" % n)
    raw = blob[8:8 + n]
    try:
        text = raw.decode("utf-8")  # strict: no overlongs, surrogates, > U+10FFFF
    except UnicodeDecodeError as e:
        raise SafetensorsError("header is not UTF-8: %s" % e)
    if not text.startswith("{"):
        raise SafetensorsError("header does not start with '{'")
    dec = json.JSONDecoder(object_pairs_hook=_no_duplicates, parse_float=_no_float,
                           parse_int=_int, parse_constant=_no_constant)
    try:
        obj, end = dec.raw_decode(text)
    except json.JSONDecodeError as e:
        raise SafetensorsError("invalid JSON: %s" % e)
    if text[end:].strip(" ") != "":
        raise SafetensorsError("bytes other than spaces after the header object")
    if not isinstance(obj, dict):
        raise SafetensorsError("header is not an object")

    tensors = {}
    metadata = {}
    has_metadata = False
    for key, val in obj.items():
        _check_str(key, "key")
        if key == "__metadata__":
            has_metadata = True
            if not isinstance(val, dict):
                raise SafetensorsError("__metadata__ is not an object")
            for mk, mv in val.items():
                _check_str(mk, "metadata key")
                if not isinstance(mv, str):
                    raise SafetensorsError("metadata value of %r is not a string" % mk)
                _check_str(mv, "metadata value")
            metadata = dict(val)
            continue
        if not isinstance(val, dict) or set(val) != {"dtype", "shape", "data_offsets"}:
            raise SafetensorsError("entry of %r must have exactly dtype, shape, data_offsets" % key)
        dtype, shape, offs = val["dtype"], val["shape"], val["data_offsets"]
        if not isinstance(dtype, str) or dtype not in DTYPES:
            raise SafetensorsError("tensor %r: unknown dtype %r" % (key, dtype))
        if not isinstance(shape, list) or len(shape) > MAX_RANK:
            raise SafetensorsError("tensor %r: shape must be a list of at most 64 integers" % key)
        for d in shape:
            _check_uint(d, "tensor %r shape" % key)
        if not isinstance(offs, list) or len(offs) != 2:
            raise SafetensorsError("tensor %r: data_offsets must hold 2 integers" % key)
        for o in offs:
            _check_uint(o, "tensor %r data_offsets" % key)
        tensors[key] = Tensor(key, dtype, shape, offs[0], offs[1])

    start = 0
    for t in sorted(tensors.values(), key=lambda t: (t.begin, t.end)):
        if t.begin != start or t.end < t.begin:
            raise SafetensorsError("tensor %r: data_offsets [%d, %d] not contiguous (expected "
                                   "begin %d)" % (t.name, t.begin, t.end, start))
        start = t.end
        count = 1
        for d in t.shape:  # left to right, 64-bit overflow refused, as the reference
            count *= d
            if count >= U64:
                raise SafetensorsError("tensor %r: element count overflows" % t.name)
        bits = count * DTYPES[t.dtype][0]
        if bits >= U64:
            raise SafetensorsError("tensor %r: size overflows" % t.name)
        if bits % 8:
            raise SafetensorsError("tensor %r: not a whole number of bytes" % t.name)
        if t.end - t.begin != bits // 8:
            raise SafetensorsError("tensor %r: %d bytes, shape needs %d" %
                                   (t.name, t.end - t.begin, bits // 8))
    if start != len(blob) - 8 - n:
        raise SafetensorsError("data section is %d bytes, tensors cover %d" %
                               (len(blob) - 8 - n, start))
    return SafeFile(blob, n, tensors, metadata, has_metadata)


def load(path):
    with open(path, "rb") as fp:
        return parse(fp.read())


def save(path, tensors, metadata=None, separators=(", ", ": "), ensure_ascii=True):
    """Write tensors, a list of (name, dtype, shape, bytes), in the given
    order (data and header alike), with json's own formatting: a different
    writer from libema's, on purpose."""
    obj = {}
    if metadata is not None:
        obj["__metadata__"] = metadata
    off = 0
    for name, dtype, shape, data in tensors:
        obj[name] = {"shape": list(shape), "dtype": dtype, "data_offsets": [off, off + len(data)]}
        off += len(data)
    hdr = json.dumps(obj, separators=separators, ensure_ascii=ensure_ascii).encode("utf-8")
    hdr += b" " * ((8 - len(hdr) % 8) % 8)
    with open(path, "wb") as fp:
        fp.write(struct.pack("<Q", len(hdr)))
        fp.write(hdr)
        for _, _, _, data in tensors:
            fp.write(data)
