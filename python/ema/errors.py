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

# ema_status values (include/ema/ema.h); frozen by the library.
EMA_OK = 0
EMA_E_INVALID_ARG = 1
EMA_E_DTYPE = 2
EMA_E_NOMEM = 3
EMA_E_NOT_FOUND = 4
EMA_E_EXISTS = 5
EMA_E_STATE = 6
EMA_E_IO = 7
EMA_E_FORMAT = 8
EMA_E_MISMATCH = 9
EMA_E_UNSUPPORTED = 10


class EmaError(Exception):
    """Base class of every error raised by the ema package.

    Attributes:
        status: the ``ema_status`` value (an int), or None for errors found
            by the binding itself that have no library status.
        message: the sentence that says what went wrong.
    """

    status = None

    def __init__(self, message, status=None):
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status

    def __str__(self):  # KeyError would otherwise repr() the message
        return self.message


class InvalidArgumentError(EmaError, ValueError):
    """EMA_E_INVALID_ARG: a bad value (decay outside [0, 1], bad shape, ...)."""

    status = EMA_E_INVALID_ARG


class DTypeError(EmaError, TypeError):
    """EMA_E_DTYPE: a dtype that cannot be averaged (integers, bool)."""

    status = EMA_E_DTYPE


class OutOfMemoryError(EmaError, MemoryError):
    """EMA_E_NOMEM: an allocation failed; nothing was changed."""

    status = EMA_E_NOMEM


class NotFoundError(EmaError, KeyError):
    """EMA_E_NOT_FOUND: no tensor of that name."""

    status = EMA_E_NOT_FOUND


class AlreadyExistsError(EmaError, ValueError):
    """EMA_E_EXISTS: that name is already registered."""

    status = EMA_E_EXISTS


class StateError(EmaError, RuntimeError):
    """EMA_E_STATE: not allowed now (update while the averages are swapped
    in, restore without a stored copy, ...)."""

    status = EMA_E_STATE


class StorageChangedError(StateError):
    """A registered array or parameter no longer uses the memory libema was
    given (``param.data = ...``, ``model.to(...)``, ``model.half()``): the
    library would read and write memory the model does not use any more.
    Raised before any library call touches that memory."""


class FileError(EmaError, OSError):
    """EMA_E_IO: open/read/write/fsync/rename failed."""

    status = EMA_E_IO


class FormatError(EmaError, ValueError):
    """EMA_E_FORMAT: not a valid checkpoint or safetensors file."""

    status = EMA_E_FORMAT


class MismatchError(EmaError, ValueError):
    """EMA_E_MISMATCH: the checkpoint lacks a tensor or has another
    dtype/shape than the one registered."""

    status = EMA_E_MISMATCH


class UnsupportedError(EmaError, NotImplementedError):
    """EMA_E_UNSUPPORTED: a feature this build of the library lacks."""

    status = EMA_E_UNSUPPORTED


_BY_STATUS = {
    cls.status: cls
    for cls in (
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
}


def error_for_status(status, message):
    """The exception (not raised) for a library status and its message."""
    cls = _BY_STATUS.get(int(status), EmaError)
    return cls(message, int(status))
