"""Issue 11 item 6: every error of the Python reader on a valid file is an ema
error, including shapes numpy cannot hold (a size that overflows, rank > 32)."""
import json
import struct

import pytest

import ema
from ema.files import open_file


def _raw(path, shape, nbytes):
    h = json.dumps({"t": {"dtype": "F32", "shape": shape, "data_offsets": [0, nbytes]}}).encode()
    h += b" " * (-len(h) % 8)
    path.write_bytes(struct.pack("<Q", len(h)) + h + b"\0" * nbytes)
    return path


@pytest.mark.parametrize("shape,nbytes", [([0, 2**53, 2**53], 0), ([1] * 33, 4), ([2**40, 2**40, 0, 3], 0)])
def test_unholdable_shape_is_an_ema_error(tmp_path, shape, nbytes):
    p = _raw(tmp_path / "t.safetensors", shape, nbytes)
    try:
        f = open_file(p)
    except ema.EmaError:
        return  # the library's own refusal is an ema error too
    with f:
        assert f.info("t").shape == tuple(shape)
        with pytest.raises(ema.EmaError) as e:
            f["t"]
        assert "read_bytes" in str(e.value) or "memory" in str(e.value)
        assert len(f.read_bytes("t")) == nbytes  # the bytes stay readable
