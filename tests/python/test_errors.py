"""ema.errors takes the status names and values from the library
(ema_status_name over 0, 1, ... until NULL), not from a copy of its own."""
import ctypes
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python"))
import ema  # noqa: E402
from ema import _lib, errors  # noqa: E402

def test_status_table_is_the_librarys():
    fn = ctypes.CDLL(_lib.path).ema_status_name  # a function object of our own
    fn.restype = ctypes.c_char_p
    fn.argtypes = [ctypes.c_int]
    expected = {}
    v = 0
    while fn(v) is not None:
        expected[fn(v).decode()] = v
        v += 1
    assert errors._status_table() == expected
    assert len(expected) == 11 and expected["EMA_OK"] == 0 and expected["EMA_E_UNSUPPORTED"] == 10
    for name, value in expected.items():
        assert getattr(errors, name) == value
    assert fn(len(expected)) is None
    assert fn(-1) is None

def test_classes_follow_the_table():
    for cls in errors._CLASSES:
        assert errors._status_table()[cls._status_name] == cls.status
        e = cls("m")
        assert e.status == cls.status and e.message == "m"
    assert ema.EmaError("m").status is None
    assert ema.StorageChangedError("moved").status == errors.EMA_E_STATE
    e = errors.error_for_status(errors.EMA_E_IO, "disk full")
    assert isinstance(e, ema.FileError) and isinstance(e, OSError) and e.status == 7
    e = errors.error_for_status(99, "new status")
    assert type(e) is ema.EmaError and e.status == 99

def test_status_strings_cover_index_out_of_range():
    text = _lib.status_string(errors.EMA_E_NOT_FOUND)
    assert "name" in text and "index" in text
