"""tests/python/test_binding.py: the ctypes binding's core, numpy side.

ema.ExponentialMovingAverage against the seeds' TensorFlow runs bit for bit
(the same printed values as tests/golden/test_seeds.c), the error classes,
zero-copy views, swap/store/restore, checkpoints, every refusal.
Run by ctest (tests/python/tests.cmake) with EMA_LIBRARY set, or by hand:
  EMA_LIBRARY=build/libema.so /usr/bin/python3 -m pytest -q tests/python
"""
import gc
import os
import sys

import numpy as np
import pytest

import ema  # noqa: E402
import st_reader  # noqa: E402  (the independent reader next to this file)


def f32bits(x):
    return int(np.asarray(x, dtype=np.float32).view(np.uint32))


def printed_bits(text):
    """Bit pattern of the float32 TensorFlow printed as text (shortest repr)."""
    return f32bits(np.float32(text))


# --------------------------------------------------------------------------
# The seeds' table, bit for bit
# --------------------------------------------------------------------------

SEED_TABLE = [  # (what TensorFlow printed, its float32 bit pattern)
    ("0.8181818", 0x3F51745D),
    ("0.96694213", None),
    ("0.99398947", None),
    ("1.7308447", None),
]


def test_seed_table_bit_for_bit():
    w = np.zeros((), dtype=np.float32)
    e = ema.ExponentialMovingAverage(0.99, num_updates=0)
    e.apply({"w": w})                      # registers: shadow = 0, the update is a no-op
    assert f32bits(e.average("w")) == 0
    w[...] = 1.0
    e.num_updates = 1
    got = []
    for _ in range(3):
        e.apply()
        got.append(f32bits(e.average("w")))
    e.num_updates = 100
    w[...] = 10.0
    e.apply([("w", w)])
    got.append(f32bits(e.average("w")))
    want = [printed_bits(t) for t, _ in SEED_TABLE]
    assert SEED_TABLE[0][1] == want[0]
    assert got == want, [hex(g) for g in got]
    # and the 100 updates after, printed every 10 (seed 002, first run)
    printed = ["3.0286236", "7.031032", "8.735577", "9.461507", "9.770666", "9.90233",
               "9.958405", "9.982285", "9.9924555", "9.996786"]
    e.apply()
    for i in range(100):
        e.apply()
        if i % 10 == 0:
            assert f32bits(e.average("w")) == printed_bits(printed[i // 10])


def test_seed_000_global_step_trap():
    """Seed 000: a float32 'trainable' global_step gets averaged with w (the
    mistake the seeds show); an integer step is refused with TypeError."""
    w = np.zeros((), np.float32)
    gs = np.zeros((), np.float32)
    e = ema.ExponentialMovingAverage(0.99)
    e.apply({"w": w, "global_step": gs})
    w[...] = 1
    gs[...] = 1
    e.num_updates = 1
    e.apply()
    assert "%.8g" % e.average("w") == "0.81818181"
    gs[...] = 100
    e.num_updates = 100
    w[...] = 10
    e.apply()
    assert "%.8g" % e.average("w") == "1.5694213"
    e.apply()
    pw = ["2.9743524", "11.139132", "20.35755", "30.024689", "39.882935",
          "49.822563", "59.796848", "69.785896", "79.781242", "89.779259"]
    pg = ["23.225294", "67.303207", "86.075096", "94.069664", "97.474388",
          "98.924385", "99.541916", "99.804916", "99.916916", "99.964607"]
    for i in range(100):
        w += 1
        e.apply()
        if i % 10 == 0:
            assert "%.8g" % e.average("w") == pw[i // 10]
            assert "%.8g" % e.average("global_step") == pg[i // 10]
    step = np.zeros((), np.int64)
    with pytest.raises(TypeError) as ex:
        e.apply({"step": step})
    assert isinstance(ex.value, ema.DTypeError) and isinstance(ex.value, ema.EmaError)
    assert "integer" in str(ex.value) and "track_state" in str(ex.value)
    assert "step" not in e
    e.track_state("step", step)           # the right way: plain state
    assert e.variables_to_restore() == {
        "w/ExponentialMovingAverage": "w",
        "global_step/ExponentialMovingAverage": "global_step",
        "step": "step",
    }


def test_first_apply_is_tensorflow_eager():
    """The first apply() creates the shadow from the value and runs the
    update too (TF2 eager): a no-op for the plain EMA, the first of k
    updates with zero_debias."""
    v = np.array([1.0, -2.0, 3.5], np.float32)
    e = ema.ExponentialMovingAverage(0.9)
    e.apply({"v": v})
    assert np.array_equal(e.average("v"), v)
    z = ema.ExponentialMovingAverage(0.9, zero_debias=True)
    v2 = v.copy()
    z.apply({"v": v2})
    # biased = 0 - (0 - v) * 0.1 = 0.1 v; average = biased / (1 - 0.9) ~ v
    np.testing.assert_allclose(z.average("v"), v, rtol=1e-6)
    v2[...] = 0
    z.apply()
    # biased = 0.1v*0.9; average = 0.09 v / (1 - 0.81) = 0.4736842 v
    np.testing.assert_allclose(z.average("v"), v * (0.09 / 0.19), rtol=1e-5)


def test_apply_subset_updates_only_those():
    a = np.zeros(4, np.float32)
    b = np.zeros(4, np.float32)
    e = ema.ExponentialMovingAverage(0.5)
    e.apply([("a", a), ("b", b)])
    a[:] = 2
    b[:] = 2
    e.apply({"a": a})
    assert np.all(e.average("a") == 1) and np.all(e.average("b") == 0)
    e.apply(None)
    assert np.all(e.average("a") == 1.5) and np.all(e.average("b") == 1)
    # a later call may register new names
    c = np.ones(2, np.float64)
    e.apply({"a": a, "c": c})
    assert e.names() == ["a", "b", "c"]
    assert e.average("c").dtype == np.float64


def test_decay_settable_per_step_and_effective_decay():
    w = np.zeros(3, np.float32)
    e = ema.ExponentialMovingAverage(0.9)
    e.apply({"w": w})
    w[:] = 1
    e.decay = 0.5
    assert e.decay == 0.5
    e.apply()
    assert np.all(e.average("w") == 0.5)
    e.num_updates = 0                      # min(0.5, 1/10)
    assert e.effective_decay == float(np.float32(1) / np.float32(10))
    e.num_updates = None
    assert e.effective_decay == 0.5
    with pytest.raises(ValueError):
        e.decay = 1.5
    with pytest.raises(ValueError):
        e.decay = float("nan")
    with pytest.raises(ValueError):
        e.num_updates = -3
    assert e.decay == 0.5
    with pytest.raises(ValueError):
        ema.ExponentialMovingAverage(-0.1)


# --------------------------------------------------------------------------
# Zero copy
# --------------------------------------------------------------------------

def test_average_view_is_zero_copy_and_follows_updates():
    w = np.arange(6, dtype=np.float32).reshape(2, 3)
    e = ema.ExponentialMovingAverage(0.5)
    e.apply({"w": w})
    view = e.average("w")
    assert view.shape == (2, 3) and view.dtype == np.float32
    assert not view.flags.writeable
    assert view.ctypes.data == e.average("w").ctypes.data    # the same memory every time
    w += 2
    e.apply()
    assert np.array_equal(view, np.arange(6).reshape(2, 3) + 1)  # the old view sees the update
    assert e.average(w) is not None                          # by array identity too


def test_view_keeps_context_alive():
    w = np.ones(1000, np.float64)
    e = ema.ExponentialMovingAverage(0.5)
    e.apply({"w": w})
    view = e.average("w")
    del e
    gc.collect()
    junk = [np.full(1000, 7.0) for _ in range(50)]          # reuse freed memory if it were freed
    assert np.all(view == 1.0)
    del junk


def test_swap_changes_values_in_place_and_back_bit_exact():
    rng = np.random.default_rng(1)
    w = rng.standard_normal(1000).astype(np.float32)
    w[:4] = [-0.0, np.inf, np.nan, 1e-45]
    e = ema.ExponentialMovingAverage(0.9)
    e.apply({"w": w})
    w[4:] += 1
    e.apply()
    before = w.copy()
    avg = np.array(e.average("w"))
    ptr = w.ctypes.data
    e.swap()
    assert e.swapped
    assert w.ctypes.data == ptr and np.array_equal(w, avg, equal_nan=True)
    with pytest.raises(ema.StateError):
        e.apply()                          # would average the averages
    with pytest.raises(RuntimeError):
        e.save("/nonexistent/never")
    e.swap()
    assert w.tobytes() == before.tobytes()
    with e.averaged():
        assert np.array_equal(w, avg, equal_nan=True)
    assert w.tobytes() == before.tobytes()
    with pytest.raises(ZeroDivisionError):
        with e.averaged():
            1 / 0
    assert w.tobytes() == before.tobytes() and not e.swapped


def test_store_copy_to_restore():
    w = np.ones(5, np.float32)
    e = ema.ExponentialMovingAverage(0.5)
    e.apply({"w": w})
    w[:] = 3
    e.apply()
    e.store()
    e.copy_to()
    assert np.all(w == 2)
    e.restore()
    assert np.all(w == 3)
    with pytest.raises(ema.StateError) as ex:
        e.restore()
    assert "store" in str(ex.value)


def test_threads_give_identical_bits():
    rng = np.random.default_rng(2)
    arrays = [rng.standard_normal(n).astype(np.float32) for n in (1, 17, 100_003, 1 << 19)]
    results = []
    for threads in (1, 2, 3):
        xs = [a.copy() for a in arrays]
        e = ema.ExponentialMovingAverage(0.99, threads=threads)
        assert e.threads == threads
        e.apply({f"x{i}": x for i, x in enumerate(xs)})
        for step in range(5):
            for x in xs:
                x *= np.float32(0.9)
                x += np.float32(step)
            e.apply()
        results.append(b"".join(e.average(f"x{i}").tobytes() for i in range(len(xs))))
    assert results[0] == results[1] == results[2]


def test_float64_and_float16_shadows():
    d = np.zeros(3, np.float64)
    h = np.zeros(3, np.float16)
    e = ema.ExponentialMovingAverage(0.9999)
    e.apply({"d": d, "h": h})
    d[:] = 1
    h[:] = 1
    e.apply()
    assert e.average("d").dtype == np.float64
    assert e.average("h").dtype == np.float32          # float32 shadows by default
    assert np.all(e.average("h") == np.float32(1) - np.float32(0.9999))
    h2 = np.ones(3, np.float16)
    same = ema.ExponentialMovingAverage(0.9999, half_shadows=True)
    same.apply({"h": h2})
    h2[:] = 2
    for _ in range(10):
        same.apply()
    assert same.average("h").dtype == np.float16
    assert np.all(same.average("h") == 1)              # a half shadow stalls at 0.9999


# --------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------

def test_save_load_resume_exactly(tmp_path):
    rng = np.random.default_rng(3)
    w = rng.standard_normal((4, 5)).astype(np.float32)
    step = np.array(7, np.int64)
    e = ema.ExponentialMovingAverage(0.9, num_updates=3, name="Avg")
    e.apply({"w": w})
    e.track_state("step", step)
    w += 1
    e.apply()
    path = tmp_path / "ckpt.safetensors"
    e.save(path)
    # the file is plain safetensors, readable by an independent reader
    f = st_reader.load(str(path))
    assert set(f.tensors) == {"w", "w/Avg", "step"}
    assert np.array_equal(f.array("w"), w) and np.array_equal(f.array("w/Avg"), e.average("w"))
    assert f.metadata["ema.name"] == "Avg" and f.metadata["ema.num_updates"] == "3"

    w2 = np.zeros_like(w)
    step2 = np.zeros((), np.int64)
    r = ema.ExponentialMovingAverage(0.5)
    r.apply({"w": w2})
    r.track_state("step", step2)
    r.load(path)
    assert np.array_equal(w2, w) and int(step2) == 7
    assert (r.decay, r.num_updates, r.name) == (0.9, 3, "Avg")
    assert r.average("w").tobytes() == e.average("w").tobytes()
    w += 1
    w2 += 1
    e.apply()
    r.apply()
    assert r.average("w").tobytes() == e.average("w").tobytes()


def test_load_averages_into_model_and_variables_to_restore(tmp_path):
    w = np.full(3, 4.0, np.float32)
    e = ema.ExponentialMovingAverage(0.5)
    e.apply({"w": w})
    w[:] = 8
    e.apply()                               # average 6
    path = str(tmp_path / "c.safetensors")
    e.save(path)
    fresh = np.zeros(3, np.float32)
    g = ema.ExponentialMovingAverage(0.5)
    g.apply({"w": fresh})
    g.load_averages_into_model(path)
    assert np.all(fresh == 6)
    assert np.all(g.average("w") == 0)      # its own averages are untouched
    assert g.variables_to_restore() == {"w/ExponentialMovingAverage": "w"}
    assert g.average_name("other") == "other/ExponentialMovingAverage"


def test_load_errors_change_nothing(tmp_path):
    w = np.ones((2, 2), np.float32)
    e = ema.ExponentialMovingAverage(0.5)
    e.apply({"w": w})
    good = tmp_path / "good.safetensors"
    e.save(good)
    # wrong shape
    v = np.zeros((3,), np.float32)
    other = ema.ExponentialMovingAverage(0.5)
    other.apply({"w": v})
    with pytest.raises(ema.MismatchError) as ex:
        other.load(good)
    assert isinstance(ex.value, ValueError) and "shape" in str(ex.value)
    assert np.all(v == 0)
    # missing tensor
    x = np.zeros(1, np.float32)
    third = ema.ExponentialMovingAverage(0.5)
    third.apply({"x": x})
    with pytest.raises(ema.MismatchError) as ex:
        third.load_averages_into_model(good)
    assert "'x" in str(ex.value)
    # corrupt file: flip one data byte (the checksum catches it)
    blob = bytearray(good.read_bytes())
    blob[-1] ^= 0x40
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(bytes(blob))
    w[:] = 5
    with pytest.raises(ema.FormatError) as ex:
        e.load(bad)
    assert "corrupt" in str(ex.value)
    assert np.all(w == 5)
    # truncated header
    bad.write_bytes(bytes(blob[:20]))
    with pytest.raises(ema.FormatError):
        e.load(bad)
    # missing file
    with pytest.raises(OSError) as ex:
        e.load(tmp_path / "missing.safetensors")
    assert isinstance(ex.value, ema.FileError)


def test_zero_debias_checkpoint(tmp_path):
    w = np.ones(3, np.float32)
    e = ema.ExponentialMovingAverage(0.9, zero_debias=True)
    e.apply({"w": w})
    w[:] = 2
    e.apply()
    p = tmp_path / "z.safetensors"
    e.save(p)
    w2 = np.zeros(3, np.float32)
    r = ema.ExponentialMovingAverage(0.9, zero_debias=True)
    r.apply({"w": w2})
    r.load(p)
    w[:] = 3
    w2[:] = 3
    e.apply()
    r.apply()
    assert r.average("w").tobytes() == e.average("w").tobytes()
    plain = ema.ExponentialMovingAverage(0.9)
    plain.apply({"w": np.zeros(3, np.float32)})
    with pytest.raises(ema.MismatchError):
        plain.load(p)


# --------------------------------------------------------------------------
# Refusals
# --------------------------------------------------------------------------

def test_error_classes():
    assert issubclass(ema.DTypeError, TypeError)
    assert issubclass(ema.InvalidArgumentError, ValueError)
    assert issubclass(ema.NotFoundError, KeyError)
    assert issubclass(ema.FileError, OSError)
    assert issubclass(ema.OutOfMemoryError, MemoryError)
    assert issubclass(ema.StateError, RuntimeError)
    assert issubclass(ema.UnsupportedError, NotImplementedError)
    for cls in (ema.DTypeError, ema.InvalidArgumentError, ema.NotFoundError, ema.FileError,
                ema.OutOfMemoryError, ema.StateError, ema.FormatError, ema.MismatchError,
                ema.AlreadyExistsError, ema.UnsupportedError, ema.StorageChangedError):
        assert issubclass(cls, ema.EmaError)
    statuses = {ema.InvalidArgumentError: 1, ema.DTypeError: 2, ema.OutOfMemoryError: 3,
                ema.NotFoundError: 4, ema.AlreadyExistsError: 5, ema.StateError: 6,
                ema.FileError: 7, ema.FormatError: 8, ema.MismatchError: 9, ema.UnsupportedError: 10}
    for cls, st in statuses.items():
        assert cls.status == st
    e = ema.NotFoundError("no tensor called 'x'")
    assert str(e) == "no tensor called 'x'"     # not KeyError's repr


def test_refusals_with_clear_messages():
    e = ema.ExponentialMovingAverage(0.9)
    with pytest.raises(TypeError, match="integer"):
        e.apply({"i": np.zeros(3, np.int32)})
    with pytest.raises(TypeError, match="bool"):
        e.apply({"b": np.zeros(3, bool)})
    with pytest.raises(ValueError, match="C-contiguous"):
        e.apply({"t": np.zeros((4, 4), np.float32).T})
    with pytest.raises(ValueError, match="C-contiguous"):
        e.apply({"s": np.zeros(8, np.float32)[::2]})
    ro = np.zeros(3, np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        e.apply({"ro": ro})
    with pytest.raises(ValueError, match="big-endian"):
        e.apply({"be": np.zeros(3, ">f4")})
    with pytest.raises(ValueError, match="list"):
        e.apply({"l": [1.0, 2.0]})
    with pytest.raises(ValueError, match="twice"):
        e.apply([("a", np.zeros(1, np.float32)), ("a", np.zeros(1, np.float32))])
    assert len(e) == 0                        # nothing was registered by the failed calls
    w = np.zeros(3, np.float32)
    e.apply({"w": w})
    with pytest.raises(ValueError, match="another array"):
        e.apply({"w": np.zeros(3, np.float32)})
    e.apply({"w": w[...]})                  # a view of the same memory is the same array
    with pytest.raises(KeyError) as ex:
        e.average("nope")
    assert "nope" in str(ex.value)
    with pytest.raises(ema.AlreadyExistsError):
        e.track_state("w", np.zeros(1, np.int64))
    e.track_state("k", np.zeros(1, np.int64))
    with pytest.raises(KeyError, match="plain state"):
        e.average("k")
    with pytest.raises(ValueError, match="plain state"):
        e.apply({"k": np.zeros(1, np.int64)})
    with pytest.raises(ValueError):
        e.apply({"bad\0name": np.zeros(1, np.float32)})
    with pytest.raises(ValueError, match="dimensions"):
        e.apply({"deep": np.zeros((1,) * 9, np.float32)})
    with pytest.raises(ValueError):
        e.threads = -1
    with pytest.raises(ema.StateError):
        e.restore()
    with pytest.raises(ema.InvalidArgumentError):
        ema.ExponentialMovingAverage(0.5, name="")
    e.close()
    with pytest.raises(ema.StateError, match="closed"):
        e.apply()


def test_zero_size_and_scalar_arrays(tmp_path):
    z = np.zeros((0, 3), np.float32)
    s = np.array(2.0, np.float64)
    e = ema.ExponentialMovingAverage(0.5)
    e.apply({"z": z, "s": s})
    s[...] = 4
    e.apply()
    assert e.average("z").shape == (0, 3) and float(e.average("s")) == 3.0
    p = tmp_path / "z.safetensors"
    e.save(p)
    e.load(p)


def test_library_facts():
    assert ema.library_version_number // 10000 == 0
    assert ema.library_version.count(".") == 2
    assert ema.isa() in ("ref", "avx2", "avx512", "neon")
    assert os.path.exists(ema.library_path) or ema.library_path.startswith("lib")


def _import_in_subprocess(env_lib):
    import subprocess
    env = dict(os.environ, EMA_LIBRARY=env_lib,
               PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(ema.__file__))))
    return subprocess.run([sys.executable, "-c", "import ema"], env=env, capture_output=True, text=True)


def test_library_discovery_errors():
    r = _import_in_subprocess("/nonexistent/libema.so")
    assert r.returncode != 0 and "ImportError" in r.stderr
    assert "cannot load libema from /nonexistent/libema.so (EMA_LIBRARY)" in r.stderr
    r = _import_in_subprocess("libm.so.6")                 # a library, but not libema
    assert r.returncode != 0 and "lacks ema_" in r.stderr and "older than this binding" in r.stderr


def test_build_tree_discovery_skips_sanitizer_builds(monkeypatch):
    from ema import _lib
    monkeypatch.delenv("EMA_LIBRARY", raising=False)
    for how, path in _lib._candidates()[0]:
        if how == "build tree":
            assert os.path.basename(os.path.dirname(path)).startswith("build")
            assert not _lib._needs_sanitizer_runtime(path)
    monkeypatch.setenv("EMA_LIBRARY", "/x/libema.so")
    assert _lib._candidates()[0] == [("EMA_LIBRARY", "/x/libema.so")]
