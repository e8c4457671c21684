"""ema: exponential moving averages of model weights, computed in place by
libema (C) through ctypes. No compiled extension; numpy required, torch
optional.

    import ema
    avg = ema.ExponentialMovingAverage(0.999)        # TensorFlow's class
    from ema.torch import EMA                         # the PyTorch class

The shared library is found through the environment variable EMA_LIBRARY
(an explicit override), then the copy pip installed inside this package,
then, in a source checkout only, its build tree (<repo>/build, build-*),
then the system (ctypes.util.find_library("ema")). See python/README.md.
"""
from . import _lib
from . import ewm as _ewm_mod
from . import files as _files_mod
from . import posthoc
from .core import ExponentialMovingAverage
from .errors import (AlreadyExistsError, DTypeError, EmaError, FileError, FormatError,
                     InvalidArgumentError, MismatchError, NotFoundError, OutOfMemoryError, StateError,
                     StorageChangedError, UnsupportedError)
from .ewm import ewm_mean
from .files import (SafetensorsFile, extract_averages, open_file, read_safetensors,
                    write_safetensors)

__version__ = "0.2.0"
#: version of the loaded library ("0.2.0") and its number (200)
library_version = _lib.version_string
library_version_number = _lib.version_number
#: path the shared library was loaded from
library_path = _lib.path


def isa():
    """Name of the kernel set the library uses in this process ("ref", "avx2", ...)."""
    return _lib.lib.ema_isa().decode()


def __getattr__(name):
    # ema.torch is imported on first use: importing torch takes a while
    if name == "torch":
        import importlib
        return importlib.import_module(".torch", __name__)
    raise AttributeError(f"module 'ema' has no attribute {name!r}")


__all__ = [
    "ExponentialMovingAverage", "posthoc", "ewm_mean",
    "open_file", "read_safetensors", "write_safetensors", "extract_averages", "SafetensorsFile",
    "EmaError", "InvalidArgumentError", "DTypeError", "OutOfMemoryError", "NotFoundError",
    "AlreadyExistsError", "StateError", "StorageChangedError", "FileError", "FormatError",
    "MismatchError", "UnsupportedError", "isa", "library_version", "library_path",
]

del _ewm_mod, _files_mod
