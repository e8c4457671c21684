"""Evaluation with the averages for ema.torch.EMA (a mixin): the seeds'
apply_shadow / restore, diffusers' store / copy_to / restore, and the
averaged deep copy (timm's ema.module, ema-pytorch's ema_model, ema(x)).

Not public: see ema.torch.EMA.
"""
import contextlib
import copy

import torch

from . import _torch_formats as _formats
from . import _torch_plan as _plan
from .errors import InvalidArgumentError, StateError


class EvalMixin:
    # -------------------------------------------------------------- evaluation
    def apply_shadow(self, member=None):
        """Put the averages (of member, default 0) into the model's
        parameters, in place; restore() gives the training values back bit
        for bit. The parameters' autograd version counters are bumped, so a
        graph built before raises at backward(). update() is refused until
        restore()."""
        self._need_registered("apply_shadow()")
        if self._applied:
            raise StateError("apply_shadow() twice: the averages are already in the model")
        if self._stored:
            raise StateError("apply_shadow() while a copy_to() is pending: call restore() first")
        self._refuse_if_other_applied("apply_shadow()")
        self._verify()
        k = self._member(member)
        if len(self._members) > 1:
            self._ctx.bank_set_active(k)
        self._ctx.swap()
        self._after_swap_in()

    def _after_swap_in(self):
        _plan.mark_applied(self._swapped_ptrs, self)
        _plan.bump_versions(self._swapped_tensors)
        self._versions = list(map(_plan.versions, self._swapped_tensors))
        self._applied = True

    def _changed_while_applied(self):
        now = list(map(_plan.versions, self._swapped_tensors))
        return [s.where for s, a, b in zip(self._swapped_slots, now, self._versions) if a != b]

    def restore(self, parameters=None, *, force=False):
        """Give the model its training values back: after apply_shadow()
        (the swap) or after store() + copy_to() (diffusers). A change made
        in place to the swapped-in parameters (an optimizer step inside
        average_parameters()) is refused: restore() would write it into the
        averages; force=True restores anyway (the averages then hold the
        changed values). parameters: diffusers' argument, ignored when it is
        the registered model's."""
        if self._applied:
            changed = self._changed_while_applied()
            if changed and not force:
                raise StateError(
                    f"the parameters holding the averages were changed in place while applied "
                    f"({', '.join(map(repr, changed[:5]))}): an optimizer step or another in-place "
                    f"write inside average_parameters()? restore() would write that change into the "
                    f"averages; restore(force=True) does it anyway")
            self._ctx.check_storage()
            self._ctx.swap()
            _plan.unmark_applied(self._swapped_ptrs, self)
            _plan.bump_versions(self._swapped_tensors)
            self._applied = False
            if len(self._members) > 1:
                self._ctx.bank_set_active(0)
            return
        if self._stored:
            self._ctx.restore()
            self._stored = False
            _plan.unmark_applied(self._swapped_ptrs, self)
            _plan.bump_versions(self._swapped_tensors)
            return
        raise StateError("restore() without apply_shadow() or store(): the model already holds its "
                         "training values")

    @contextlib.contextmanager
    def average_parameters(self, member=None):
        """with ema.average_parameters(): evaluate(model) -- the model holds
        the averages inside the block and its training values after it,
        even when the block raises."""
        self.apply_shadow(member)
        try:
            yield self.model
        finally:
            self.restore()

    @property
    def applied(self):
        """True between apply_shadow() and restore()."""
        return self._applied

    def store(self, parameters=None):
        """diffusers' store(): keep a copy of the model's training values
        (in the library), for copy_to() then restore()."""
        self._need_registered("store()")
        if self._applied:
            raise StateError("store() while the averages are applied; call restore() first")
        self._verify()
        self._ctx.store()
        self._stored = True

    def copy_to(self, target=None, *, member=None, overwrite=False):
        """Write the averages into a model. target None (or the registered
        model, or its parameters): the registered model, which needs store()
        first so restore() can give the training values back (overwrite=True
        replaces them for good, diffusers' end-of-training copy_to()).
        target another nn.Module of the same architecture: its tensors get
        the averages (and the copied/kept tensors), by name."""
        self._need_registered("copy_to()")
        if self._applied:
            raise StateError("copy_to() while the averages are applied; call restore() first")
        k = self._member(member)
        if isinstance(target, torch.nn.Module) and target is not self.model and not self._wraps(target):
            _formats.load_into_module(target, self.averaged_state_dict(member=k))
            return target
        if target is not None and not isinstance(target, torch.nn.Module):
            target = list(target)
            mine = [s.tensor for s in self._slots if s.role == "param"]
            if len(target) != len(mine) or any(a is not b for a, b in zip(target, mine)):
                raise InvalidArgumentError("copy_to(parameters): these are not the registered model's "
                                           "parameters; pass a module to copy the averages into")
        if not self._stored and not overwrite:
            raise StateError("copy_to() into the registered model would overwrite its training values "
                             "and nothing keeps them: call store() first (store, copy_to, evaluate, "
                             "restore), use average_parameters(), or pass overwrite=True to replace "
                             "them for good")
        self._refuse_if_other_applied("copy_to()")
        self._verify()
        if len(self._members) > 1:
            self._ctx.bank_set_active(k)
        try:
            self._ctx.copy_to()
        finally:
            if len(self._members) > 1:
                self._ctx.bank_set_active(0)
        _plan.bump_versions(self._swapped_tensors)
        if self._stored:
            _plan.mark_applied(self._swapped_ptrs, self)
        return self.model

    # ------------------------------------------------------ the averaged model
    @property
    def module(self):
        """An eval-ready deep copy of the model that holds the averages
        (timm's ema.module; ema-pytorch's ema_model): made at first use,
        refreshed at each use after an update(), or by refresh_module()."""
        self._need_registered("module")
        if self._module is None or self._module_at != self._updates:
            self.refresh_module()
        return self._module

    ema_model = module

    def refresh_module(self, member=None):
        """(Re)write the averages into ema.module now; returns it."""
        self._need_registered("refresh_module()")
        if self._module is None:
            m = copy.deepcopy(self.model)
            m.requires_grad_(False)
            m.eval()
            self._module = m
        _formats.load_into_module(self._module, self.averaged_state_dict(member=member))
        self._module_at = self._updates
        return self._module

    def __call__(self, *args, **kwargs):
        """ema(x): the averaged model's forward (ema.module(x))."""
        return self.module(*args, **kwargs)

