"""Exceptions of the ema package.

Every status code of the C library maps to one class below. All of them
derive from :class:`EmaError` and also from the built-in exception a Python
programmer would expect, so ``except TypeError`` catches an integer array
given to ``apply()`` and ``except KeyError`` catches an unknown name.

The message is the library's own sentence (``ema_last_error``), or for
errors found by the binding before the library is called, a sentence in
the same style.
"""

__all__ = [
    "EmaError",
    "InvalidArgumentError",
    "DTypeError",
    "OutOfMemoryError",
    "NotFoundError",
    "AlreadyExistsError",
    "StateError",
    "StorageChangedError",
    "FileError",
    "FormatError",
    "MismatchError",
    "UnsupportedError",
    "error_for_status",
]

import ctypes

# The status names and values are the library's (EMA_STATUS_MAP in
# include/ema/core.h): read once with ema_status_name(0), (1), ... until
# NULL, and then available here as EMA_OK, EMA_E_IO, ... (module attributes)
# and as each class's ``status``. The table is read on first use, when the
# package has loaded the library (_lib imports this module before it loads
# the library, and nothing reads a status before that finished).
_TABLE = None


def _status_table():
    """{name: value} of every status the library knows."""
    global _TABLE
    if _TABLE is None:
        from . import _lib

        fn = _lib.lib.ema_status_name
        fn.restype = ctypes.c_char_p
        fn.argtypes = [ctypes.c_int]
        table = {}
        value = 0
        while True:
            name = fn(value)
            if name is None:
                break
            table[name.decode()] = value
            value += 1
        _TABLE = table
    return _TABLE


def __getattr__(name):
    """EMA_OK, EMA_E_INVALID_ARG, ...: the library's status values."""
    if name.startswith("EMA_"):
        table = _status_table()
        if name in table:
            return table[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _StatusClass(type):
    """Gives each error class a ``status`` read from the library's table by
    the class's ``_status_name`` (None for EmaError itself)."""

    @property
    def status(cls):
        name = getattr(cls, "_status_name", None)
        return None if name is None else _status_table()[name]


class EmaError(Exception, metaclass=_StatusClass):
    """Base class of every error raised by the ema package.

    Attributes:
        status: the ``ema_status`` value (an int), or None for errors found
            by the binding itself that have no library status.
        message: the sentence that says what went wrong.
    """

    _status_name = None

    def __init__(self, message, status=None):
        super().__init__(message)
        self.message = message
        self.status = status if status is not None else type(self).status

    def __str__(self):  # KeyError would otherwise repr() the message
        return self.message


class InvalidArgumentError(EmaError, ValueError):
    """EMA_E_INVALID_ARG: a bad value (decay outside [0, 1], bad shape, ...)."""

    _status_name = "EMA_E_INVALID_ARG"


class DTypeError(EmaError, TypeError):
    """EMA_E_DTYPE: a dtype that cannot be averaged (integers, bool)."""

    _status_name = "EMA_E_DTYPE"


class OutOfMemoryError(EmaError, MemoryError):
    """EMA_E_NOMEM: an allocation failed; nothing was changed."""

    _status_name = "EMA_E_NOMEM"


class NotFoundError(EmaError, KeyError):
    """EMA_E_NOT_FOUND: no tensor of that name."""

    _status_name = "EMA_E_NOT_FOUND"


class AlreadyExistsError(EmaError, ValueError):
    """EMA_E_EXISTS: that name is already registered."""

    _status_name = "EMA_E_EXISTS"


class StateError(EmaError, RuntimeError):
    """EMA_E_STATE: not allowed now (update while the averages are swapped
    in, restore without a stored copy, ...)."""

    _status_name = "EMA_E_STATE"


class StorageChangedError(StateError):
    """A registered array or parameter no longer uses the memory libema was
    given (``param.data = ...``, ``model.to(...)``, ``model.half()``): the
    library would read and write memory the model does not use any more.
    Raised before any library call touches that memory."""


class FileError(EmaError, OSError):
    """EMA_E_IO: open/read/write/fsync/rename failed."""

    _status_name = "EMA_E_IO"


class FormatError(EmaError, ValueError):
    """EMA_E_FORMAT: not a valid checkpoint or safetensors file."""

    _status_name = "EMA_E_FORMAT"


class MismatchError(EmaError, ValueError):
    """EMA_E_MISMATCH: the checkpoint lacks a tensor or has another
    dtype/shape than the one registered."""

    _status_name = "EMA_E_MISMATCH"


class UnsupportedError(EmaError, NotImplementedError):
    """EMA_E_UNSUPPORTED: a feature this build of the library lacks."""

    _status_name = "EMA_E_UNSUPPORTED"


_CLASSES = (
    InvalidArgumentError,
    DTypeError,
    OutOfMemoryError,
    NotFoundError,
    AlreadyExistsError,
    StateError,
    FileError,
    FormatError,
    MismatchError,
    UnsupportedError,
)


def error_for_status(status, message):
    """The exception (not raised) for a library status and its message."""
    by_status = {cls.status: cls for cls in _CLASSES}
    cls = by_status.get(int(status), EmaError)
    return cls(message, int(status))
