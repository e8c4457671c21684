#!/usr/bin/python3
"""tests/fuzz/make_tool_corpus.py: writes the seed inputs of fuzz_tool_cli
into tests/fuzz/corpus_tool/ (see the input layout at the top of
fuzz_tool_cli.c): one or more valid runs of each command (inspect, extract,
posthoc, smooth) on small valid files, and a few classic failures.
Run it again after changing the layout; the files are committed.
"""
import json
import os
import struct

here = os.path.dirname(os.path.abspath(__file__))
out = os.path.join(here, "corpus_tool")
CMD = {"inspect": 0, "extract": 1, "posthoc": 2, "smooth": 3}


def safetensors(tensors, meta):
    """tensors: list of (name, dtype, shape, bytes)."""
    header, off, data = {}, 0, b""
    if meta:
        header["__metadata__"] = meta
    for name, dt, shape, raw in tensors:
        header[name] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + len(raw)]}
        off += len(raw)
        data += raw
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data


def f32(*v):
    return struct.pack("<%df" % len(v), *v)


def seed(name, cmd, args, f=b"", g=b""):
    a = "\n".join(args).encode()
    assert len(a) < 256
    body = bytes([CMD[cmd], len(a)]) + a + struct.pack("<H", len(f)) + f + g
    with open(os.path.join(out, name), "wb") as fp:
        fp.write(body)


ckpt = safetensors([("w", "F32", [2], f32(1, 2)), ("w/ExponentialMovingAverage", "F32", [2], f32(1.5, 2.5)),
                    ("h", "F16", [2], b"\x00\x3c\x00\x40"), ("h/ExponentialMovingAverage", "F32", [2], f32(1, 2)),
                    ("step", "I64", [], struct.pack("<q", 7))],
                   {"libema.format": "1", "ema.name": "ExponentialMovingAverage", "ema.decay": "0.99"})
snap_a = safetensors([("w", "F32", [3], f32(1, 2, 3)), ("step", "I64", [], struct.pack("<q", 100))],
                     {"ema.t": "100", "ema.gamma": "6.94"})
snap_b = safetensors([("w", "F32", [3], f32(1.1, 2.1, 3.1)), ("step", "I64", [], struct.pack("<q", 200))],
                     {"ema.t": "200", "ema.sigma_rel": "0.05"})
csv = b"day,temp\n1,2.5\n2,3.5\n3,\n4,5\n"

seed("inspect_text", "inspect", ["@F"], ckpt)
seed("inspect_json", "inspect", ["--json", "--ema-name", "slow", "@F"], ckpt)
seed("inspect_two", "inspect", ["@F", "@G"], ckpt, ckpt)
seed("extract", "extract", ["@F", "-o", "@O"], ckpt)
seed("extract_name", "extract", ["--ema-name", "ExponentialMovingAverage", "@F", "--output=@O"], ckpt)
seed("posthoc", "posthoc", ["--sigma-rel", "0.07", "--max-residual", "inf", "@F", "@G", "-o", "@O"], snap_a, snap_b)
seed("posthoc_two", "posthoc", ["--sigma-rel", "0.07", "--gamma", "9", "--at-step", "200", "--max-residual",
                                "inf", "@F", "@G", "-o", "@O", "-o", "@P"], snap_a, snap_b)
seed("posthoc_step", "posthoc", ["--sigma-rel", "0.07", "--at-step", "150", "@F", "@G", "-o", "@O"], snap_a, snap_b)
seed("smooth", "smooth", ["--input", "@F", "--column", "temp", "--alpha", "0.5"], csv)
seed("smooth_out", "smooth", ["-i", "@F", "-c", "temp", "--span", "3", "--ignore-na", "-o", "@O", "--plot", "@P"],
     csv)
seed("smooth_times", "smooth", ["-i", "@F", "-c", "temp", "--halflife", "2", "--times", "day"], csv)
seed("smooth_builtin", "smooth", ["--beta", "0.9", "--min-periods", "3"])
seed("help", "posthoc", ["--help"])
seed("bad_option", "inspect", ["--bogus", "@F"], ckpt)
seed("junk_file", "inspect", ["@F"], b"\x08\x00\x00\x00\x00\x00\x00\x00{\"a\":1}")
