#!/usr/bin/python3
"""tests/tool/test_inspect_extract.py: `ema inspect` and `ema extract`.

inspect: on checkpoints written by tool_fixture (every float dtype, plain
state, zero-debias internals, a bank of three averages) and on foreign
safetensors files written by tests/python/st_reader.py, the roles, dtypes,
shapes and the relative distances ||raw - avg|| / ||raw|| must match an
independent computation in numpy from st_reader's parse of the same file.

extract: the output must be a valid safetensors file for st_reader (written
from the spec, independently of libema) whose tensors are the checkpoint's
averages rounded to the model dtype under the model names, plus plain state.

Both: missing, empty, truncated and corrupt files fail with one line.
"""
import json
import os

import toolcheck

np = toolcheck.need("numpy")
t = toolcheck.Context()
st_reader = toolcheck.need("st_reader")


def as_f64(sf, name):
    a = sf.array(name)
    if sf.tensors[name].dtype == "BF16":
        a = (a.astype(np.uint32) << 16).view(np.float32)
    return np.asarray(a, dtype=np.float64)


def to_bf16_bits(x32):
    u = np.asarray(x32, dtype=np.float32).view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def inspect_json(path, *extra):
    p = t.run("inspect", "--json", *extra, path)
    if not t.expect(p, 0, "inspect --json %s" % os.path.basename(path)):
        return None
    try:
        return json.loads(p.stdout)
    except ValueError as e:
        t.check(False, "inspect --json prints valid JSON", e)
        return None


def check_distances(path, info, names=("ExponentialMovingAverage",)):
    sf = st_reader.load(path)
    by_name = {x["name"]: x for x in info["tensors"]}
    t.check(set(by_name) == set(sf.tensors), "%s: every tensor listed" % path, sorted(by_name))
    for x in info["tensors"]:
        tn = sf.tensors[x["name"]]
        t.check(x["dtype"] == tn.dtype and tuple(x["shape"]) == tn.shape, "%s: dtype and shape" % x["name"], x)
        for a in x["averages"]:
            raw, avg = as_f64(sf, x["name"]), as_f64(sf, a["name"])
            want = np.linalg.norm(raw - avg) / np.linalg.norm(raw)
            t.check(a["rel_distance"] is not None and abs(a["rel_distance"] - want) <= 1e-12 * want,
                    "%s vs %s: distance %r, numpy %r" % (x["name"], a["name"], a["rel_distance"], want))
    return by_name


# --- a checkpoint with every float dtype ---
ckpt = t.path("ckpt.safetensors")
t.fixture("ckpt", ckpt)
info = inspect_json(ckpt)
if info:
    by = check_distances(ckpt, info)
    t.check(info["ema_names"] == ["ExponentialMovingAverage"], "one EMA name", info["ema_names"])
    t.check(info["metadata"].get("ema.decay") in ("0.9", "0.90000000000000002"), "decay in the metadata",
            info["metadata"])
    t.check(by["global_step"]["role"] == "state" and by["global_step"]["averages"] == [], "global_step: state")
    for n, dt, avg_dt in [("layer.w32", "F32", "F32"), ("layer.w64", "F64", "F64"), ("layer.h16", "F16", "F32"),
                          ("layer.b16", "BF16", "F32")]:
        t.check(by[n]["role"] == "model" and by[n]["average"] == n + "/ExponentialMovingAverage",
                "%s has its average" % n, by[n])
        t.check(by[n]["averages"] and by[n]["averages"][0]["dtype"] == avg_dt,
                "%s: %s model, %s shadow" % (n, dt, avg_dt), by[n])
        t.check(by[n + "/ExponentialMovingAverage"]["role"] == "average", "%s/...: role average" % n)
p = t.run("inspect", ckpt)
t.expect(p, 0, "inspect (text)", stdout_has=["layer.w32", "yes (F32)", "- (plain state)", "EMA state: decay",
                                             "||raw-avg||/||raw||", "libema checkpoint"])
if info:
    d = info["tensors"][[x["name"] for x in info["tensors"]].index("layer.w64")]["rel_distance"]
    t.check(("%.4g" % d) in p.stdout, "text shows the distance to 4 digits", p.stdout)

# --- zero-debias internals ---
ckpt_d = t.path("debias.safetensors")
t.fixture("ckpt", ckpt_d, "--debias")
info = inspect_json(ckpt_d)
if info:
    by = check_distances(ckpt_d, info)
    internal = [x["name"] for x in info["tensors"] if x["role"] == "internal"]
    t.check(any(n.endswith("/biased") for n in internal) and any(n.endswith("/local_step") for n in internal),
            "debias accumulators are internal", internal)
    t.check(by["layer.w32"]["rel_distance"] is not None, "distances with zero_debias")

# --- a bank of averages ---
bank = t.path("bank.safetensors")
t.fixture("ckpt-bank", bank)
info = inspect_json(bank)
if info:
    t.check(set(info["ema_names"]) == {"ExponentialMovingAverage", "slow", "power"}, "three EMA names",
            info["ema_names"])
    by = check_distances(bank, info)
    t.check(len(by["w"]["averages"]) == 3, "w has three averages", by["w"])
p = t.run("inspect", bank)
t.expect(p, 0, "inspect a bank (text)", stdout_has=["slow", "power", "3 (F32)"])

# --- a foreign file, written by another writer ---
foreign = t.path("foreign.safetensors")
f32 = lambda *v: np.array(v, dtype="<f4").tobytes()
f64 = lambda *v: np.array(v, dtype="<f8").tobytes()
st_reader.save(foreign, [
    ("a", "F32", [2], f32(3, 4)), ("a/ExponentialMovingAverage", "F32", [2], f32(0, 0)),
    ("b", "U8", [2], b"\x01\x02"), ("b/ExponentialMovingAverage", "U8", [2], b"\x01\x01"),
    ("c", "F32", [2], f32(1, 2)), ("c/ExponentialMovingAverage", "F32", [3], f32(1, 2, 3)),
    ("d/ExponentialMovingAverage", "F32", [1], f32(1)),
    ("e", "F64", [2], f64(0, 0)), ("e/ExponentialMovingAverage", "F64", [2], f64(0, 0)),
    ("f", "F64", [1], f64(0)), ("f/ExponentialMovingAverage", "F64", [1], f64(1)),
    ("g", "F64", [2, 2], f64(1, 1, 1, 1)), ("g/swa", "F64", [2, 2], f64(1, 1, 1, 3)),
    ("h", "F16", [2], np.array([1, 2], dtype="<f2").tobytes()),
    ("h/ExponentialMovingAverage", "BF16", [2], to_bf16_bits([1.5, 2]).tobytes()),
    ("huge", "F64", [2], f64(1e300, 1e300)), ("huge/ExponentialMovingAverage", "F64", [2], f64(-1e300, 1e300)),
])
info = inspect_json(foreign)
if info:
    by = {x["name"]: x for x in info["tensors"]}
    t.check(by["a"]["rel_distance"] == 1.0, "a: ||[3,4]-0||/||[3,4]|| = 1", by["a"])
    t.check(by["b"]["rel_distance"] is None and by["b"]["averages"][0]["note"] == "not a float dtype",
            "U8: no distance, a note", by["b"])
    t.check(by["c"]["averages"][0]["note"] == "shape differs from the average's", "shape mismatch noted", by["c"])
    t.check(by["d/ExponentialMovingAverage"]["role"] == "orphan", "average without its tensor: orphan")
    t.check(by["e"]["rel_distance"] == 0.0, "zero tensor, zero average: distance 0", by["e"])
    t.check(by["f"]["rel_distance"] is None, "zero tensor, non-zero average: infinite (null in JSON)", by["f"])
    t.check(by["g"]["averages"] == [] and by["g/swa"]["role"] == "model", "unknown EMA name: not an average")
    t.check(abs(by["h"]["rel_distance"] - 0.5 / np.sqrt(5)) < 1e-15, "F16 model, BF16 average", by["h"])
    t.check(abs(by["huge"]["rel_distance"] - np.sqrt(2)) < 1e-15, "no overflow with 1e300 values: 2e300 / (1e300 sqrt 2)", by["huge"])
    t.check(by["a"]["role"] == "model", "no libema metadata: tensors are 'model', not 'state'", by["a"])
info = inspect_json(foreign, "--ema-name", "swa")
if info:
    by = {x["name"]: x for x in info["tensors"]}
    t.check(by["g/swa"]["role"] == "average" and abs(by["g"]["rel_distance"] - 1.0) < 1e-15,
            "--ema-name swa finds g/swa (distance 2/2 = 1)", by["g"])
p = t.run("inspect", "--ema-name", "a/b", foreign)
t.expect_usage(p, "inspect", "--ema-name with a slash", "--ema-name")

# --- bad files ---
p = t.run("inspect", t.path("nope.safetensors"))
t.expect_failure(p, "inspect a missing file", "nope.safetensors")
with open(ckpt, "rb") as f:
    blob = f.read()
bads = {"empty.st": b"", "short.st": b"\x05\x00", "truncated.st": blob[:-7], "garbage.st": os.urandom(64) + blob,
        "header.st": blob[:8] + b"[" + blob[9:]}
for name, content in bads.items():
    with open(t.path(name), "wb") as f:
        f.write(content)
    p = t.run("inspect", t.path(name))
    t.expect_failure(p, "inspect corrupt " + name, name)
    p = t.run("extract", t.path(name), "-o", t.path("x.st"))
    t.expect_failure(p, "extract corrupt " + name, name)
p = t.run("inspect", t.tmp)
t.expect(p, 1, "inspect a directory")

# --- extract ---
out = t.path("inference.safetensors")
p = t.run("extract", ckpt, "-o", out)
if t.expect(p, 0, "extract", stdout_has="wrote"):
    src, got = st_reader.load(ckpt), st_reader.load(out)
    t.check(set(got.tensors) == {"layer.w32", "layer.w64", "layer.h16", "layer.b16", "global_step"},
            "extract: model names and plain state", sorted(got.tensors))
    for n in ["layer.w32", "layer.w64", "layer.h16", "layer.b16", "global_step"]:
        t.check(got.tensors[n].dtype == src.tensors[n].dtype and got.tensors[n].shape == src.tensors[n].shape,
                "extract: %s keeps the model's dtype and shape" % n)
    avg = lambda n: src.array(n + "/ExponentialMovingAverage")
    t.check(got.raw("layer.w32") == avg("layer.w32").tobytes(), "extract: f32 average, same bits")
    t.check(got.raw("layer.w64") == avg("layer.w64").tobytes(), "extract: f64 average, same bits")
    t.check(got.raw("layer.h16") == avg("layer.h16").astype("<f2").tobytes(),
            "extract: f32 shadow rounded to f16 (nearest even)", (got.array("layer.h16"), avg("layer.h16")))
    t.check(got.raw("layer.b16") == to_bf16_bits(avg("layer.b16")).tobytes(),
            "extract: f32 shadow rounded to bf16 (nearest even)")
    t.check(got.raw("global_step") == src.raw("global_step"), "extract: plain state copied")
    info = inspect_json(out)
    if info:
        t.check(all(x["role"] == "model" for x in info["tensors"]), "the extracted file has no averages left")
p = t.run("extract", out, "-o", t.path("again.safetensors"))
t.expect_failure(p, "extract a file without averages", "no averages")
p = t.run("extract", foreign, "--ema-name", "swa", "-o", t.path("swa.safetensors"))
if t.expect(p, 0, "extract --ema-name swa from a foreign file"):
    got = st_reader.load(t.path("swa.safetensors"))
    t.check(list(np.frombuffer(got.raw("g"), "<f8")) == [1, 1, 1, 3], "g comes from g/swa")
p = t.run("extract", ckpt)
t.expect_usage(p, "extract", "extract without -o", "missing -o")
p = t.run("extract", "-o", out)
t.expect_usage(p, "extract", "extract without a checkpoint", "missing the checkpoint")
p = t.run("extract", t.path("nope.st"), "-o", out)
t.expect_failure(p, "extract a missing file", "nope.st")
p = t.run("extract", ckpt, "-o", t.path("no-such-dir", "x.st"))
t.expect_failure(p, "extract into a missing directory", "no-such-dir")

t.done()
