#!/usr/bin/env python3
"""tests/fuzz/make_corpus.py: writes the seed corpus of the safetensors fuzzer.

Usage: python3 tests/fuzz/make_corpus.py [OUT_DIR]   (default: tests/fuzz/corpus)

Seeds are small (under 2 KiB each) and deterministic. Two kinds of input, as
fuzz_safetensors.c reads them:
  *.st    a whole file: 8-byte little-endian header length, header, data;
  *.hdr   header mode: the JSON header, then optionally a NUL byte and the
          data (the fuzz target makes up the length field).
"valid_*" seeds must be accepted by the reader, "bad_*" ones refused; each bad
one is a valid file with one thing wrong, so the fuzzer starts next to the
edges. Written from the format description, independently of the C writer.
"""
import json
import os
import struct
import sys

DTYPES = {  # name: bits
    "BOOL": 8, "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6, "U8": 8, "I8": 8,
    "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8, "I16": 16, "U16": 16, "F16": 16,
    "BF16": 16, "I32": 32, "U32": 32, "F32": 32, "C64": 64, "F64": 64,
    "I64": 64, "U64": 64,
}


def nbytes(dtype, shape):
    n = 1
    for d in shape:
        n *= d
    return n * DTYPES[dtype] // 8


def pattern(n, seed):
    return bytes((seed * 131 + i * 7) & 0xFF for i in range(n))


def header_json(tensors, metadata=None, sep=(",", ":"), ascii_only=False):
    """tensors: list of (name, dtype, shape). Offsets follow the list order."""
    obj = {}
    if metadata is not None:
        obj["__metadata__"] = metadata
    off = 0
    for name, dtype, shape in tensors:
        n = nbytes(dtype, shape)
        obj[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [off, off + n]}
        off += n
    text = json.dumps(obj, separators=sep, ensure_ascii=ascii_only)
    return text.encode("utf-8"), off


def whole(hdr, data, pad=True):
    if pad:
        hdr = hdr + b" " * ((8 - len(hdr) % 8) % 8)
    return struct.pack("<Q", len(hdr)) + hdr + data


def valid_file(tensors, metadata=None, **kw):
    hdr, total = header_json(tensors, metadata, **kw)
    return whole(hdr, pattern(total, len(tensors)))


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "corpus")
    os.makedirs(out, exist_ok=True)
    for f in os.listdir(out):
        if f.startswith(("valid_", "bad_")):
            os.remove(os.path.join(out, f))
    seeds = {}

    # ---- valid ----------------------------------------------------------
    seeds["valid_empty.st"] = whole(b"{}", b"")
    seeds["valid_metadata_only.st"] = valid_file([], {"framework": "pt", "ema/decay": "0.99"})
    seeds["valid_one_f32.st"] = valid_file([("w", "F32", [2, 3])])
    seeds["valid_all_dtypes.st"] = valid_file(
        [("t_" + d, d, [4]) for d in sorted(DTYPES, key=lambda d: -DTYPES[d])])
    seeds["valid_rank0_and_empty.st"] = valid_file(
        [("scalar", "F64", []), ("empty", "F32", [0]), ("empty2", "I8", [3, 0, 2]),
         ("step", "I64", [])])
    seeds["valid_checkpoint.st"] = valid_file(
        [("w", "F32", [3]), ("w/ExponentialMovingAverage", "F32", [3]), ("global_step", "I64", [])],
        {"ema.decay": "0.99", "ema.num_updates": "100", "ema.format": "1"})
    seeds["valid_names.st"] = valid_file(
        [("layer/0/w\u00e9\u4e2d\U0001F600", "BF16", [2]), ('q"b\\s', "F16", [1]),
         ("ctl\x01\n\t", "U8", [1]), ("", "U8", [1])], {"k\u00e9": "v\x1f\"\\/"})
    seeds["valid_ascii_escapes.st"] = valid_file(
        [("\u00e9\U0001F600/x", "F32", [1])], {"\u20ac": "\U0010FFFF"}, ascii_only=True)
    seeds["valid_spaces.st"] = valid_file(
        [("a", "F32", [1]), ("b", "I32", [2])], {"x": "y"}, sep=(", ", ": "))
    seeds["valid_unpadded.st"] = whole(header_json([("a", "U8", [3])])[0], b"abc", pad=False)
    # header order differs from data order
    hdr = (b'{"b":{"dtype":"U8","shape":[2],"data_offsets":[3,5]},'
           b'"a":{"data_offsets":[0,3],"shape":[3],"dtype":"U8"}}')
    seeds["valid_out_of_order.st"] = whole(hdr, b"abcde")
    seeds["valid_whitespace.st"] = whole(
        b'{ "a" :\n\t{ "dtype" : "F32" ,\r\n "shape" : [ 1 ] , "data_offsets" : [ 0 , 4 ] } }',
        b"\0\0\x80\x3f")
    seeds["valid_subbyte.st"] = valid_file([("f4", "F4", [2, 2]), ("f6", "F6_E3M2", [4])])
    seeds["valid_bound.st"] = whole(
        b'{"z":{"dtype":"F32","shape":[9007199254740992,0],"data_offsets":[0,0]}}', b"")
    seeds["valid_many.st"] = valid_file([("t%03d" % i, "F16", [1]) for i in range(24)])
    seeds["valid_header_mode.hdr"] = (
        b'{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"__metadata__":{"k":"v"}}'
        b"\0" + pattern(8, 1))
    seeds["valid_header_mode_empty.hdr"] = b"{}"
    seeds["valid_header_mode_dims.hdr"] = (
        b'{"x":{"dtype":"U8","shape":[1,1,1,1,1,1,1,1,2],"data_offsets":[0,2]}}\0xy')

    # ---- bad: one thing wrong each ------------------------------------
    one = b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}'
    d4 = b"\0\0\0\0"

    def bad(name, hdr, data=d4, pad=True):
        seeds["bad_" + name + ".st"] = whole(hdr, data, pad)

    base = valid_file([("a", "F32", [2]), ("b", "U8", [3])], {"k": "v"})
    for cut in (0, 5, 8, 20, len(base) - 4, len(base) - 1):
        seeds["bad_truncated_%d.st" % cut] = base[:cut]
    seeds["bad_trailing_byte.st"] = base + b"\0"
    seeds["bad_len_past_end.st"] = struct.pack("<Q", 1000) + one + d4
    seeds["bad_len_over_cap.st"] = struct.pack("<Q", 100000001) + one + d4
    seeds["bad_len_huge.st"] = b"\xff" * 8 + one + d4
    seeds["bad_len_zero.st"] = struct.pack("<Q", 0) + one + d4
    two = '{"a":{"dtype":"F32","shape":[2],"data_offsets":[%d,%d]},' \
          '"b":{"dtype":"F32","shape":[1],"data_offsets":[%d,%d]}}'
    bad("gap", (two % (0, 8, 9, 13)).encode(), b"\0" * 13)
    bad("overlap", (two % (0, 8, 4, 8)).encode(), b"\0" * 8)
    bad("not_from_zero", (two % (4, 12, 12, 16)).encode(), b"\0" * 16)
    bad("end_before_begin", (two % (0, 8, 12, 8)).encode(), b"\0" * 12)
    bad("size_mismatch", (two % (0, 8, 8, 16)).encode(), b"\0" * 16)
    bad("dup_name", b'{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},'
        b'"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}', b"xy")
    bad("dup_name_escaped", b'{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},'
        b'"\\u0061":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}', b"xy")
    bad("dup_metadata", b'{"__metadata__":{},"__metadata__":{}}', b"")
    bad("dup_meta_key", b'{"__metadata__":{"k":"1","k":"2"}}', b"")
    bad("dup_field", b'{"a":{"dtype":"F32","dtype":"F32","shape":[1],"data_offsets":[0,4]}}')
    bad("overflow_shape", b'{"a":{"dtype":"F32","shape":[4294967296,4294967296,2],'
        b'"data_offsets":[0,0]}}', b"")
    bad("overflow_bits", b'{"a":{"dtype":"F64","shape":[4503599627370496,64],'
        b'"data_offsets":[0,0]}}', b"")
    bad("above_2_53", b'{"a":{"dtype":"F32","shape":[9007199254740993],"data_offsets":[0,0]}}')
    bad("leading_zero", one.replace(b"[1]", b"[01]"))
    bad("negative", one.replace(b"[1]", b"[-1]"))
    bad("fraction", one.replace(b"[1]", b"[1.0]"))
    bad("exponent", one.replace(b"[1]", b"[1e0]"))
    bad("nested_shape", one.replace(b"[1]", b"[[1]]"))
    bad("missing_dtype", b'{"a":{"shape":[1],"data_offsets":[0,4]}}')
    bad("missing_offsets", b'{"a":{"dtype":"F32","shape":[1]}}')
    bad("extra_field", one.replace(b"]}}", b'],"extra":1}}'))
    bad("dtype_lower", one.replace(b'"F32"', b'"f32"'))
    bad("dtype_number", one.replace(b'"F32"', b"32"))
    bad("meta_number", b'{"__metadata__":{"k":1}}', b"")
    bad("meta_null", b'{"__metadata__":null}', b"")
    bad("meta_nested", b'{"__metadata__":{"k":{"x":"y"}}}', b"")
    bad("utf8_overlong", b'{"\xc0\x80":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}', b"x")
    bad("utf8_surrogate", b'{"\xed\xa0\x80":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}',
        b"x")
    bad("utf8_too_big", b'{"\xf4\x90\x80\x80":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}',
        b"x")
    bad("utf8_truncated", b'{"__metadata__":{"k":"\xe2\x82"}}', b"")
    bad("lone_high_surrogate", b'{"__metadata__":{"k":"\\ud800"}}', b"")
    bad("lone_low_surrogate", b'{"__metadata__":{"k":"\\udc00x"}}', b"")
    bad("escaped_nul", b'{"__metadata__":{"k":"\\u0000"}}', b"")
    bad("bad_escape", b'{"__metadata__":{"k":"\\x41"}}', b"")
    bad("raw_control", b'{"__metadata__":{"k":"a\nb"}}', b"")
    bad("trailing_garbage", one + b"x")
    bad("trailing_newline", one + b"\n", pad=False)
    bad("leading_space", b" " + one)
    bad("trailing_comma", one[:-1] + b",}")
    bad("top_array", b"[]", b"")
    bad("rank65", b'{"a":{"dtype":"U8","shape":[' + b",".join([b"1"] * 65) +
        b'],"data_offsets":[0,1]}}', b"x")
    bad("subbyte_partial", b'{"a":{"dtype":"F4","shape":[3],"data_offsets":[0,2]}}', b"xy")
    seeds["bad_header_mode_dup.hdr"] = b'{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},' \
                                       b'"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}\0xy'
    seeds["bad_header_mode_short.hdr"] = b'{"a":{"dtype":"U8","shape":[3],"data_offsets":[0,3]}}\0x'

    for name, blob in sorted(seeds.items()):
        assert len(blob) < 2048, name
        with open(os.path.join(out, name), "wb") as fp:
            fp.write(blob)
    print("wrote %d seeds to %s" % (len(seeds), out))


if __name__ == "__main__":
    main()
