"""ema.ExponentialMovingAverage: TensorFlow's tf.train.ExponentialMovingAverage
over numpy arrays and torch tensors, computed by libema in place.
"""
import contextlib

from . import _arrays
from ._context import Context
from ._lib import FLOAT_DTYPES as _FLOAT_CODES
from .errors import InvalidArgumentError, NotFoundError

__all__ = ["ExponentialMovingAverage"]


# the library's calls in this class's words (errors never name C functions)
_TERMS = {
    "ema_swap": "swap()", "ema_restore": "restore()", "ema_store": "store()", "ema_copy_to": "copy_to()",
    "ema_track": "apply()", "ema_track_state": "track_state()", "ema_track_policy": "track_state()",
    "ema_apply": "apply()", "ema_apply_some": "apply()", "ema_save": "save()", "ema_load": "load()",
    "ema_load_averages_into_model": "load_averages_into_model()", "ema_set_name": "name=",
    "ema_set_zero_debias": "zero_debias=", "ema_retarget": "apply()",
}


def _pairs(named_tensors, what):
    if isinstance(named_tensors, dict):
        items = list(named_tensors.items())
    else:
        try:
            items = list(named_tensors)
        except TypeError:
            raise InvalidArgumentError(
                f"{what} takes a dict or an iterable of (name, array) pairs, got "
                f"{type(named_tensors).__name__}") from None
        for i, it in enumerate(items):
            if not (isinstance(it, tuple) and len(it) == 2):
                raise InvalidArgumentError(
                    f"{what}: item {i} is not a (name, array) pair: {type(it).__name__}")
    seen = set()
    for name, _ in items:
        if not isinstance(name, str):
            raise InvalidArgumentError(f"{what}: names must be str, got {type(name).__name__}")
        if name in seen:
            raise InvalidArgumentError(f"{what}: {name!r} is given twice")
        seen.add(name)
    return items


class ExponentialMovingAverage:
    """Moving averages of named numpy arrays or torch tensors, the way
    tf.train.ExponentialMovingAverage keeps them, bit for bit.

    ema = ExponentialMovingAverage(decay, num_updates=None, zero_debias=False,
                                   name="ExponentialMovingAverage",
                                   threads=None, half_shadows=False)

    decay: in [0, 1]; settable between steps (ema.decay = 0.999).
    num_updates: TensorFlow's num_updates (its global_step): when not None the
        decay used is min(decay, (1 + n) / (10 + n)) in float32. libema never
        counts by itself: set ema.num_updates = step before each apply().
    zero_debias: TensorFlow's zero_debias (shadows start at 0, the average
        is divided by 1 - decay^k).
    name: the suffix of every average in checkpoints, "<tensor>/<name>".
    threads: threads an update may use (None: the library default).
    half_shadows: float16/bfloat16 arrays get float32 shadows by default;
        True keeps shadows of their own dtype, as TensorFlow does.

    Arrays are borrowed, never copied: libema reads them at every apply() and
    writes into them on swap(), copy_to(), restore(), load() and
    load_averages_into_model(). Keep training the very same array (update it
    in place: w[...] = ..., w -= lr * g, optimizer steps on a tensor);
    the object keeps a reference to every registered array so its memory
    stays valid.
    """

    def __init__(self, decay, num_updates=None, zero_debias=False, name="ExponentialMovingAverage",
                 *, threads=None, half_shadows=False):
        self._ctx = Context(decay, num_updates=num_updates, zero_debias=zero_debias, name=name,
                            threads=threads, half_shadows=half_shadows)
        self._ctx.h.terms = _TERMS

    # ---------------------------------------------------------------- options
    @property
    def name(self):
        """The EMA's name (after load(): the checkpoint's)."""
        return self._ctx.name

    @property
    def decay(self):
        return self._ctx.decay

    @decay.setter
    def decay(self, value):
        self._ctx.decay = value

    @property
    def num_updates(self):
        return self._ctx.num_updates

    @num_updates.setter
    def num_updates(self, n):
        self._ctx.num_updates = n

    @property
    def zero_debias(self):
        return self._ctx.zero_debias

    @property
    def effective_decay(self):
        """The decay the next apply() will use (after the num_updates warm-up)."""
        return self._ctx.effective_decay

    @property
    def threads(self):
        return self._ctx.threads

    @threads.setter
    def threads(self, n):
        self._ctx.threads = n

    # ------------------------------------------------------------- registering
    def apply(self, named_tensors=None):
        """Maintain moving averages of the given arrays (TensorFlow's apply).

        named_tensors: a dict {name: array} or an iterable of (name, array)
        pairs; None updates every averaged array registered so far.

        The first time a name is seen its shadow is created as a copy of the
        array's current value, and then the update runs for every array of
        the call, new ones included. That is TensorFlow's apply() in eager
        mode (TF 2): slot created from var.read_value(), then
        assign_moving_average on every var of var_list in the same call.
        Because a fresh shadow equals its value, that first update leaves it
        unchanged (exactly, for finite values: TF turns an infinity into NaN); with zero_debias it is the first of the k updates.
        Later calls update only the arrays named (TensorFlow's var_list),
        which must be the very arrays registered under those names.

        Raises TypeError (DTypeError) for integer or boolean arrays (carry
        them with track_state()), ValueError (InvalidArgumentError) for a
        non-contiguous, read-only or non-CPU array or a different array under
        a registered name; nothing is registered or updated then.
        """
        ctx = self._ctx
        if named_tensors is None:
            ctx.check_storage()
            ctx.apply_all()
            return
        items = _pairs(named_tensors, "apply()")
        new, names = [], []
        for name, obj in items:
            e = ctx.entries.get(name)
            if e is None:
                new.append((name, obj, _arrays.describe(obj, repr(name))))
            else:
                if not e.averaged:
                    raise InvalidArgumentError(
                        f"{name!r} is registered as plain state (track_state); it is never averaged")
                self._same_array(e, obj)
            names.append(name)
        # validate every new array before registering any: integer arrays
        # get the library's own refusal (it registers nothing for them)
        for name, obj, desc in new:
            if desc.dtype not in _FLOAT_CODES:
                ctx.track(name, obj, averaged=True, desc=desc)
            _arrays.check_dims(desc, repr(name))
        for name, obj, desc in new:
            ctx.track(name, obj, averaged=True, desc=desc)
        ctx.check_storage(names)
        ctx.apply_some(names)

    @staticmethod
    def _same_array(e, obj):
        if obj is e.desc.obj:
            return  # a tensor whose .data was replaced is caught by check_storage()
        d = _arrays.describe(obj, repr(e.name))
        if not d.same_memory(e.desc):
            raise InvalidArgumentError(
                f"{e.name!r} was registered with another array (address {e.desc.ptr:#x}, dtype "
                f"{_arrays.dtype_label(e.desc)}, shape {e.desc.shape}); libema averages the registered "
                f"array in place: update that array (w[...] = value) instead of passing a new one")

    def track_state(self, name, array):
        """Register array as plain state: never averaged, saved under its own
        name, restored by load() and load_averages_into_model() (TensorFlow's
        variables_to_restore() maps such variables to themselves). Any of
        float32/64/16, bfloat16, int32, int64."""
        self._ctx.track(name, array, averaged=False)

    # ---------------------------------------------------------------- reading
    def _resolve(self, key):
        if isinstance(key, str):
            return key
        for e in self._ctx.entries.values():
            if e.desc.obj is key:
                return e.name
        raise NotFoundError("that array is not registered (pass its name, or the registered array itself)")

    def average(self, name):
        """The average of a registered array, as a zero-copy view over
        libema's shadow memory: a read-only numpy array for numpy arrays, a
        torch tensor for torch tensors (do not write into it). It follows
        every later apply(). name: the name, or the registered array itself.
        The view keeps the library context alive. f16/bf16 arrays have
        float32 averages unless half_shadows=True (bf16 as numpy: uint16 bit
        patterns). While swapped, do not rely on the view: for same-dtype
        shadows it holds the training values then.
        Unlike TensorFlow (which returns None), an unknown name raises
        KeyError (NotFoundError)."""
        return self._ctx.average_view(self._resolve(name))

    def average_name(self, name):
        """"<name>/<ema name>", the checkpoint key of name's average; name
        need not be registered."""
        return self._ctx.average_name(self._resolve(name) if not isinstance(name, str) else name)

    def variables_to_restore(self):
        """TensorFlow's variables_to_restore(): {checkpoint key: name} where
        each average's key (average_name) maps to its array's name and plain
        state maps to itself."""
        out = {}
        for e in self._ctx.entries.values():
            out[self._ctx.average_name(e.name) if e.averaged else e.name] = e.name
        return out

    def names(self):
        """Registered names, averaged and plain state, in registration order."""
        return list(self._ctx.entries)

    def __contains__(self, name):
        return name in self._ctx.entries

    def __len__(self):
        return len(self._ctx.entries)

    # ------------------------------------------------------------- evaluation
    def swap(self):
        """Exchange arrays and averages in place; call again to undo (bit-exact)."""
        self._ctx.check_storage()
        self._ctx.swap()

    @property
    def swapped(self):
        return self._ctx.swapped

    @contextlib.contextmanager
    def averaged(self):
        """with ema.averaged(): the registered arrays hold the averages inside
        the block and get their values back after it, even on an exception."""
        self.swap()
        try:
            yield self
        finally:
            self._ctx.swap()

    def store(self):
        """Keep a copy of every averaged array's values (for copy_to, restore)."""
        self._ctx.check_storage()
        self._ctx.store()
        self._stored = True

    def copy_to(self, overwrite=False):
        """Write the averages into the arrays. Needs store() first, so that
        restore() can give the values back; overwrite=True replaces the
        arrays' values for good (nothing keeps them)."""
        if not getattr(self, "_stored", False) and not overwrite:
            from .errors import StateError
            raise StateError("copy_to() would overwrite the arrays' values with the averages and nothing "
                             "keeps them: call store() first (store, copy_to, evaluate, restore), use "
                             "averaged() / swap(), or pass overwrite=True to replace them for good")
        self._ctx.check_storage()
        self._ctx.copy_to()

    def restore(self):
        """Put back the values kept by store()."""
        self._ctx.check_storage()
        self._ctx.restore()
        self._stored = False

    # ------------------------------------------------------------ checkpoints
    def save(self, path):
        """One safetensors file: each array under its name, each average under
        average_name(), plain state, and the EMA state; written atomically."""
        self._ctx.check_storage()
        self._ctx.save(path)

    def load(self, path):
        """Resume from save(): arrays, averages, decay, num_updates and name
        come back (everything registered must be in the file)."""
        self._ctx.check_storage()
        self._ctx.load(path)

    def load_averages_into_model(self, path):
        """Each average in the file lands in its registered array; plain
        state lands under its own name. The averages themselves are unchanged."""
        self._ctx.check_storage()
        self._ctx.load_averages_into_model(path)

    def close(self):
        """Free the library context now (views taken with average() keep it
        alive until they go). Swapped arrays get their values back first."""
        self._ctx.close()

    def __repr__(self):
        n = sum(e.averaged for e in self._ctx.entries.values())
        return (f"ExponentialMovingAverage(decay={self.decay!r}, num_updates={self.num_updates!r}, "
                f"zero_debias={self.zero_debias!r}, name={self.name!r}, averaged={n}, "
                f"state={len(self) - n})")

