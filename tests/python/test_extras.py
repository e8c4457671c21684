"""tests/python/test_extras.py: the thin wrappers: safetensors files
(ema.open_file / read_safetensors / write_safetensors / extract_averages),
post-hoc EMA (ema.posthoc) and the series EMA (ema.ewm_mean).
"""

import numpy as np
import pytest

import ema  # noqa: E402
from ema import posthoc  # noqa: E402
import st_reader  # noqa: E402


# --------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------

def test_write_then_read_both_ways(tmp_path):
    rng = np.random.default_rng(0)
    tensors = {
        "a": rng.standard_normal((3, 4)).astype(np.float32),
        "b": rng.standard_normal(5),
        "h": rng.standard_normal(2).astype(np.float16),
        "i": np.arange(6, dtype=np.int64).reshape(2, 3),
        "j": np.array(7, np.int32),
        "empty": np.zeros((0, 2), np.float32),
    }
    ro = tensors["a"].copy()
    ro.flags.writeable = False                     # read-only arrays may be written to files
    tensors["ro"] = ro
    p = tmp_path / "t.safetensors"
    ema.write_safetensors(p, tensors, {"who": "test", "ünïcode": "✓"})
    back = ema.read_safetensors(p)
    assert set(back) == set(tensors)
    for k, v in tensors.items():
        assert back[k].dtype == v.dtype and back[k].shape == v.shape and np.array_equal(back[k], v), k
    with ema.open_file(p) as f:
        assert f.metadata == {"who": "test", "ünïcode": "✓"}
        assert f.info("a") == ("a", "F32", (3, 4), 48)
        assert f.info("a").dtype == "F32" and len(f) == len(tensors) and "b" in f
        assert f.read_bytes("a", 4, 4) == tensors["a"].tobytes()[4:8]
        with pytest.raises(KeyError):
            f["nope"]
    # the independent reader agrees
    ind = st_reader.load(str(p))
    for k, v in tensors.items():
        assert np.array_equal(ind.array(k), v), k


def test_files_from_another_writer(tmp_path):
    """Files written by st_reader (another writer: spaces, any order, BF16,
    U8, BOOL) read back the same through libema."""
    bf = np.array([0x3F80, 0xC000, 0x7F80], np.uint16)      # 1, -2, inf as bfloat16
    u8 = np.arange(4, dtype=np.uint8)
    bo = np.array([True, False])
    p = tmp_path / "other.safetensors"
    st_reader.save(str(p), [("u8", "U8", (4,), u8.tobytes()), ("bf", "BF16", (3,), bf.tobytes()),
                            ("bo", "BOOL", (2,), bo.tobytes())], {"k": "v"})
    got = ema.read_safetensors(p)
    assert np.array_equal(got["bf"], np.array([1.0, -2.0, np.inf], np.float32))
    assert np.array_equal(got["u8"], u8) and np.array_equal(got["bo"], bo)
    assert np.array_equal(ema.read_safetensors(p, bf16="bits")["bf"], bf)


def test_file_errors(tmp_path):
    p = tmp_path / "bad.safetensors"
    p.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":1}        ")
    with pytest.raises(ema.FormatError) as ex:
        ema.open_file(p)
    assert isinstance(ex.value, ValueError) and str(ex.value)
    with pytest.raises(ema.FileError):
        ema.read_safetensors(tmp_path / "missing")
    with pytest.raises(ValueError, match="C-contiguous"):
        ema.write_safetensors(tmp_path / "x", {"t": np.zeros((3, 3), np.float32).T})
    with pytest.raises(ValueError):
        ema.write_safetensors(tmp_path / "x", {"u": np.zeros(3, np.uint8)})
    with pytest.raises(ema.FileError):
        ema.write_safetensors(tmp_path / "no" / "dir" / "x", {"a": np.zeros(1, np.float32)})
    with pytest.raises(ema.FormatError):
        ema.extract_averages(p, tmp_path / "out")


def test_extract_averages(tmp_path):
    w = np.full(4, 2.0, np.float16)
    s = np.array(3, np.int64)
    e = ema.ExponentialMovingAverage(0.5, name="EMA")
    e.apply({"w": w})
    e.track_state("s", s)
    w[:] = 4
    e.apply()
    ck = tmp_path / "ck.safetensors"
    e.save(ck)
    out = tmp_path / "inf.safetensors"
    ema.extract_averages(ck, out)
    got = ema.read_safetensors(out)
    assert set(got) == {"w", "s"}
    assert got["w"].dtype == np.float16 and np.all(got["w"] == 3) and int(got["s"]) == 3


# --------------------------------------------------------------------------
# Post-hoc EMA
# --------------------------------------------------------------------------

def test_sigma_rel_gamma_round_trip():
    assert posthoc.sigma_rel_to_gamma(0.05) == pytest.approx(16.9721986, abs=1e-6)
    assert posthoc.sigma_rel_to_gamma(0.10) == pytest.approx(6.9372039, abs=1e-6)
    assert posthoc.sigma_rel_to_gamma(posthoc.SIGMA_REL_MAX) == pytest.approx(0.0, abs=1e-12)
    for s in (0.01, 0.05, 0.1, 0.2):
        g = posthoc.sigma_rel_to_gamma(s)
        assert posthoc.gamma_to_sigma_rel(g) == pytest.approx(s, rel=1e-13)
        # the closed form
        assert np.sqrt((g + 1) / ((g + 2) ** 2 * (g + 3))) == pytest.approx(s, rel=1e-13)
    with pytest.raises(ValueError):
        posthoc.sigma_rel_to_gamma(0.3)
    with pytest.raises(ValueError):
        posthoc.gamma_to_sigma_rel(-1.5)
    assert posthoc.power_decay(6.94, 1, 1) == 0.0
    assert posthoc.power_decay(6.94, 100, 1) == pytest.approx((1 - 1 / 100) ** 7.94, rel=1e-14)
    assert posthoc.inner(1.0, 3.0, 1.0, 3.0) == pytest.approx(16 / 7, rel=1e-14)


def test_posthoc_solve_against_numpy():
    g1, g2 = posthoc.sigma_rel_to_gamma(0.05), posthoc.sigma_rel_to_gamma(0.10)
    ts = np.arange(1, 9) * 1000.0
    t = np.concatenate([ts, ts])
    g = np.concatenate([np.full(8, g1), np.full(8, g2)])
    gr = posthoc.sigma_rel_to_gamma(0.07)

    def ip(ta, ga, tb, gb):
        # <p_a, p_b> from the integral of the two profiles (EDM2 eq. 151)
        tmax = max(ta, tb)
        e = gb if ta < tb else -ga
        return (ga + 1) * (gb + 1) * (ta / tb) ** e / ((ga + gb + 1) * tmax)

    A = np.array([[ip(t[i], g[i], t[j], g[j]) for j in range(16)] for i in range(16)])
    b = np.array([ip(t[i], g[i], 8000.0, gr) for i in range(16)])
    x_np = np.linalg.solve(A, b)
    coef, info = posthoc.solve(t, g, 8000.0, sigma_rel_r=0.07, normalize=False)
    assert info.n_used == 16 and info.cond == pytest.approx(np.linalg.cond(A), rel=1e-6)
    np.testing.assert_allclose(coef, x_np, rtol=0, atol=1e-12 * info.cond * np.abs(x_np).max())
    assert 0 <= info.residual < 0.05
    norm, _ = posthoc.solve(t, g, 8000.0, gamma_r=gr)
    assert norm.sum() == pytest.approx(1.0, abs=1e-12)
    early, info2 = posthoc.solve(t, g, 4500.0, gamma_r=gr)
    assert info2.n_used == 8 and np.all(early[t > 4500] == 0)
    with pytest.raises(ValueError, match="identical|singular"):
        posthoc.solve([1.0, 1.0], [5.0, 5.0], 1.0, gamma_r=5.0)
    with pytest.raises(ValueError):
        posthoc.solve(t, g, 8000.0)                  # neither gamma_r nor sigma_rel_r


# --------------------------------------------------------------------------
# Series
# --------------------------------------------------------------------------

def test_ewm_mean_matches_recursion_and_pandas():
    x = np.array([1.0, 2.0, np.nan, 4.0, 10.0, -3.0])
    out = ema.ewm_mean(x, alpha=0.5, adjust=False)
    y, want = None, []
    for v in x:                                       # pandas' adjust=False recursion
        if np.isnan(v):
            want.append(y)
            continue
        y = v if y is None else 0.5 * y + 0.5 * v
        want.append(y)
    # pandas (ignore_na=False) ages the weights over the missing value
    pd = pytest.importorskip("pandas")
    for kw in ({"alpha": 0.5, "adjust": False}, {"span": 3}, {"com": 0.7, "ignore_na": True},
               {"halflife": 2.0, "min_periods": 2}):
        got = ema.ewm_mean(x, **kw)
        ref = pd.Series(x).ewm(**kw).mean().to_numpy()
        np.testing.assert_allclose(got, ref, rtol=1e-14, equal_nan=True)
    times = np.array(["2024-01-01", "2024-01-02", "2024-01-04", "2024-01-05", "2024-01-09",
                      "2024-01-10"], dtype="datetime64[ns]")
    got = ema.ewm_mean(x, halflife=np.timedelta64(2, "D"), times=times)
    ref = pd.Series(x).ewm(halflife="2 days", times=pd.DatetimeIndex(times)).mean().to_numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-13, equal_nan=True)
    assert out[0] == 1.0 and out[1] == 1.5 and out[2] == 1.5
    with pytest.raises(ValueError, match="one of"):
        ema.ewm_mean(x)
    with pytest.raises(ValueError):
        ema.ewm_mean(x, alpha=1.5)
    with pytest.raises(ValueError):
        ema.ewm_mean(x, alpha=0.5, span=3)
