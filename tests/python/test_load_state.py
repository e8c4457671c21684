"""Issue 11 item 2: after a load the binding reports the EMA state the
library loaded (decay, num_updates, name), never values it re-parsed from the
file; a file the library refuses changes nothing."""
import numpy as np
import pytest

import ema
from ema.files import open_file, read_safetensors, write_safetensors


def _checkpoint(tmp_path, **meta_changes):
    """A real checkpoint whose __metadata__ is then edited (checksum dropped)."""
    w = np.arange(4, dtype=np.float32)
    src = ema.ExponentialMovingAverage(decay=0.5, num_updates=3)
    src.apply([("w", w)])
    p = tmp_path / "src.safetensors"
    src.save(p)
    with open_file(p) as f:
        meta = dict(f.metadata)
    meta.pop("libema.xxh64")
    for k, v in meta_changes.items():
        k = k.replace("__", ".")
        if v is None:
            meta.pop(k, None)
        else:
            meta[k] = v
    out = tmp_path / "edited.safetensors"
    write_safetensors(out, read_safetensors(p), meta)
    return out


def _fresh():
    w = np.full(4, 7.0, np.float32)
    e = ema.ExponentialMovingAverage(decay=0.9)
    e.apply([("w", w)])
    return e, w


def test_state_comes_from_the_library(tmp_path):
    p = _checkpoint(tmp_path, ema__decay="0.5", ema__average__0__decay="0.75")
    e, w = _fresh()
    e.load(p)
    # the library updates with member 0's decay: the binding says the same
    assert e.decay == float(ema._lib.lib.ema_decay(e._ctx.h.ptr)) == 0.75


def test_member_name_from_the_library(tmp_path):
    p = _checkpoint(tmp_path, ema__name="Other", ema__average__0__name="ExponentialMovingAverage")
    e, w = _fresh()
    e.load(p)  # the library names member 0 from ema.average.0.name
    lib_name = ema._lib.lib.ema_bank_name(e._ctx.h.ptr, 0).decode()
    assert e.name == lib_name == "ExponentialMovingAverage"
    assert e.average_name("w") == f"w/{lib_name}"
    assert set(e.variables_to_restore()) >= {f"w/{lib_name}"}


def test_hex_float_refused_and_nothing_changed(tmp_path):
    p = _checkpoint(tmp_path, ema__decay="0x1p-1", ema__average__0__decay="0x1p-1")
    e, w = _fresh()
    before = w.copy()
    avg_before = np.array(e.average("w"))
    with pytest.raises(ema.FormatError):
        e.load(p)
    np.testing.assert_array_equal(w, before)
    np.testing.assert_array_equal(np.array(e.average("w")), avg_before)
    assert e.decay == 0.9


def test_num_updates_after_load(tmp_path):
    p = _checkpoint(tmp_path)
    e, w = _fresh()
    e.load(p)
    assert e.num_updates == 3 and e.decay == 0.5 and e.name == "ExponentialMovingAverage"
