"""tests/python/test_torch_safety.py: what used to corrupt results silently
(issue 12, "Found"), each refused or done right now.

Two EMA objects on one model; autograd across a swap; changes to swapped-in
parameters; the model's structure changing after register(); nothing to
average; strict loads; read-only averages; copy_to() without store(); tied
weights in exports; Python words in errors; copies and pickles.
"""
import copy
import io
import pickle

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import ema  # noqa: E402
from ema.torch import EMA  # noqa: E402

nn = torch.nn


def mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))


def nudge(model, by=0.5):
    with torch.no_grad():
        for p in model.parameters():
            p.add_(by)


def values(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# --------------------------------------------------------------------------
# Several EMA objects on one model
# --------------------------------------------------------------------------

def test_interleaved_swaps_of_two_emas_are_refused():
    m = mlp()
    e1, e2 = EMA(m, 0.5, name="fast").register(), EMA(m, 0.9, name="slow").register()
    nudge(m)
    e1.update()
    e2.update()
    training = values(m)
    avg1 = {n: e1.average(n) for n in e1.names(averaged=True)}
    e1.apply_shadow()
    with pytest.raises(ema.StateError, match="another EMA.*'fast'"):
        e2.apply_shadow()
    assert not e2.applied
    for n, p in m.named_parameters():          # the model still holds e1's averages
        assert torch.equal(p.detach(), avg1[n]), n
    with pytest.raises(ema.StateError, match="without apply_shadow"):
        e2.restore()
    e1.restore()
    assert same(values(m), training)
    with e2.average_parameters():               # and e2 works once e1 is restored
        pass
    assert same(values(m), training)


def test_update_of_one_ema_while_another_is_applied_is_refused():
    m = mlp()
    e1, e2 = EMA(m, 0.5).register(), EMA(m, 0.9).register()
    nudge(m)
    before = {n: e2.average(n) for n in e2.names(averaged=True)}
    with e1.average_parameters():
        with pytest.raises(ema.StateError, match="another EMA"):
            e2.update()
    for n, v in before.items():
        assert torch.equal(e2.average(n), v), n
    e2.update()                                 # fine after the block
    assert not torch.equal(e2.average("0.weight"), before["0.weight"])


# --------------------------------------------------------------------------
# Autograd and in-place changes across a swap
# --------------------------------------------------------------------------

def test_backward_after_apply_shadow_raises_instead_of_wrong_gradients():
    m = mlp()
    e = EMA(m, 0.5).register()
    nudge(m, 1.0)
    e.update()
    x = torch.randn(5, 4)
    loss = m(x).square().sum()          # saves the weights for backward
    e.apply_shadow()
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()
    e.restore()
    loss = m(x).square().sum()
    with e.average_parameters():
        pass
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()                  # restore() bumps the counters too
    m(x).square().sum().backward()       # a fresh graph is fine


def test_optimizer_step_while_applied_is_detected_at_restore():
    m = mlp()
    e = EMA(m, 0.5).register()
    nudge(m)
    e.update()
    avg = {n: e.average(n) for n in e.names(averaged=True)}
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    e.apply_shadow()
    m(torch.randn(3, 4)).sum().backward()
    opt.step()                           # writes into the parameters holding the averages
    with pytest.raises(ema.StateError, match="changed in place while applied.*'0.weight'"):
        e.restore()
    assert e.applied                     # nothing was swapped back
    e.restore(force=True)
    assert not e.applied
    assert not torch.equal(e.average("0.weight"), avg["0.weight"])   # force: the change went in


# --------------------------------------------------------------------------
# The model changing after register()
# --------------------------------------------------------------------------

def test_unfrozen_parameter_is_detected_at_update():
    m = mlp()
    m[2].weight.requires_grad_(False)
    e = EMA(m, 0.5).register()
    assert "2.weight" in e.names(averaged=False)
    m[2].weight.requires_grad_(True)
    with pytest.raises(ema.StateError, match="requires_grad changed for '2.weight'.*reregister"):
        e.update()
    auto = EMA(mlp(), 0.5, on_replaced="reregister")
    auto.model[2].weight.requires_grad_(False)
    auto = EMA(auto.model, 0.5, on_replaced="reregister").register()
    nudge(auto.model)
    auto.update()
    kept = auto.average("0.weight")
    auto.model[2].weight.requires_grad_(True)
    nudge(auto.model)
    auto.update()                        # re-registered, documented: averaged from now on
    assert "2.weight" in auto.names(averaged=True)
    w = auto.model[2].weight.detach()
    assert torch.equal(auto.average("2.weight"), w)        # starts from its current value
    torch.testing.assert_close(auto.average("0.weight"), 0.5 * kept + 0.5 * auto.model[0].weight.detach())


def test_parameters_added_after_register_are_detected():
    m = mlp()
    e = EMA(m, 0.5).register()
    m.extra = nn.Linear(2, 2)
    with pytest.raises(ema.StateError, match="added after register.*'extra.weight'"):
        e.update()
    m2 = mlp()
    e2 = EMA(m2, 0.5).register()
    m2[0].register_parameter("gain", nn.Parameter(torch.ones(8)))
    with pytest.raises(ema.StateError, match="'0.gain'"):
        e2.update()
    e2.reregister()
    e2.update()
    assert "0.gain" in e2.names(averaged=True)
    m3 = mlp()
    e3 = EMA(m3, 0.5).register()
    m3[2] = nn.Linear(8, 2)              # a submodule replaced by a new one
    with pytest.raises(ema.StateError, match="replaced by new ones.*'2.weight'"):
        e3.update()


def test_nothing_to_average_is_an_error():
    with pytest.raises(ValueError, match="nothing to average"):
        EMA(nn.ReLU()).register()
    frozen = nn.Linear(2, 2).requires_grad_(False)
    with pytest.raises(ValueError, match="nothing to average"):
        EMA(frozen, 0.9).register()
    with pytest.raises(ValueError, match="nothing to average"):
        EMA(nn.Linear(2, 2), 0.9, ignore=("*",)).register()


# --------------------------------------------------------------------------
# Strict loads
# --------------------------------------------------------------------------

def test_load_state_dict_is_strict_and_names_keys(tmp_path):
    m = mlp()
    e = EMA(m, 0.5).register()
    nudge(m)
    e.update()
    sd = e.state_dict()
    before = {n: e.average(n) for n in e.names(averaged=True)}
    extra = copy.deepcopy(sd)
    extra["tensors"]["ghost.weight/ExponentialMovingAverage"] = torch.zeros(2)
    with pytest.raises(ema.MismatchError, match="unexpected 'ghost.weight/ExponentialMovingAverage'"):
        e.load_state_dict(extra)
    lacking = copy.deepcopy(sd)
    del lacking["tensors"]["0.bias/ExponentialMovingAverage"]
    with pytest.raises(ema.MismatchError, match="missing '0.bias/ExponentialMovingAverage'"):
        e.load_state_dict(lacking)
    for n, v in before.items():
        assert torch.equal(e.average(n), v)
    e.load_state_dict(extra, strict=False)
    e.load_state_dict(lacking, strict=False)
    for n, v in before.items():
        assert torch.equal(e.average(n), v)
    # a file with tensors this EMA does not have
    big = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2), nn.Linear(2, 2))
    big[0].load_state_dict(m[0].state_dict())
    big[2].load_state_dict(m[2].state_dict())
    p = tmp_path / "big.safetensors"
    EMA(big, 0.5).register().save(p)
    with pytest.raises(ema.MismatchError, match="unexpected .*'3.weight'"):
        e.load(p)


# --------------------------------------------------------------------------
# Read-only averages
# --------------------------------------------------------------------------

def test_shadow_and_average_cannot_be_written_by_mistake():
    m = mlp()
    e = EMA(m, 0.5).register()
    with pytest.raises(TypeError, match="read-only"):
        e.shadow["0.weight"] = torch.zeros(8, 4)
    a = e.average("0.weight")
    a.zero_()                            # a copy: the EMA is unchanged
    assert torch.equal(e.average("0.weight"), m[0].weight.detach())
    s = e.shadow["0.bias"]
    s.add_(1)
    assert torch.equal(e.average("0.bias"), m[0].bias.detach())


def test_tf_class_copy_to_without_store_keeps_the_values():
    w = np.ones(3, np.float32)
    t = ema.ExponentialMovingAverage(0.5)
    t.apply({"w": w})
    w[...] = 3.0
    t.apply()
    with pytest.raises(ema.StateError, match="store\\(\\) first"):
        t.copy_to()
    assert (w == 3.0).all()
    t.store()
    t.copy_to()
    assert (w == 2.0).all()
    t.restore()
    assert (w == 3.0).all()
    t.copy_to(overwrite=True)
    assert (w == 2.0).all()


# --------------------------------------------------------------------------
# Tied weights in exports
# --------------------------------------------------------------------------

class TiedLM(nn.Module):
    def __init__(self, vocab=11, d=6):
        super().__init__()
        self.emb = nn.Embedding(vocab, d)
        self.head = nn.Linear(d, vocab, bias=False)
        self.head.weight = self.emb.weight

    def forward(self, ids):
        return self.head(self.emb(ids))


def test_exports_keep_tied_aliases(tmp_path):
    m = TiedLM()
    e = EMA(m, 0.5).register()
    nudge(m)
    e.update()
    sd = e.averaged_state_dict()
    assert set(sd) == set(m.state_dict())
    assert torch.equal(sd["emb.weight"], sd["head.weight"])
    fresh = TiedLM()
    fresh.load_state_dict(sd)            # strict
    assert torch.equal(fresh.emb.weight, e.average("emb.weight"))
    p = tmp_path / "tied.safetensors"
    e.export(p)
    back = {k: torch.from_numpy(v) for k, v in ema.read_safetensors(p).items()}
    TiedLM().load_state_dict(back)
    assert e.average("head.weight").shape == m.head.weight.shape   # the alias names the tensor


# --------------------------------------------------------------------------
# Errors in Python terms
# --------------------------------------------------------------------------

def test_errors_name_python_calls():
    m = mlp()
    e = EMA(m, 0.5).register()
    with pytest.raises(ValueError, match="name must be a str") as ex:
        e.average(None)
    assert not isinstance(ex.value, AttributeError)
    e.update(m)                          # timm's call shape, with the registered model
    e.update(m, 5)
    assert e.step == 5
    with pytest.raises(ValueError, match="another Sequential") as ex:
        e.update(mlp(1))
    assert "Linear(" not in str(ex.value)
    with pytest.raises(ValueError, match="takes the registered model or a step") as ex:
        e.update("model")
    e.store()
    with pytest.raises(ema.StateError) as ex:
        e.store()
    assert "ema_" not in str(ex.value) and "restore()" in str(ex.value)
    e.restore()


# --------------------------------------------------------------------------
# Copies and pickles
# --------------------------------------------------------------------------

@pytest.mark.parametrize("how", ["deepcopy", "pickle", "torch.save"])
def test_copies_and_pickles(how):
    m = mlp()
    e = EMA(m, 0.8, warmup="inverse_power", update_after_step=1).register()
    for _ in range(4):
        nudge(m, 0.25)
        e.update()
    if how == "deepcopy":
        c = copy.deepcopy(e)
    elif how == "pickle":
        c = pickle.loads(pickle.dumps(e))
    else:
        buf = io.BytesIO()
        torch.save(e, buf)
        buf.seek(0)
        c = torch.load(buf)
    assert c.model is not m and same(values(c.model), values(m))
    assert c.step == e.step == 4 and c.decay == e.decay
    for n in e.names(averaged=True):
        assert torch.equal(c.average(n), e.average(n)), n
    for x in (m, c.model):
        nudge(x, 0.25)
    e.update()
    c.update()
    for n in e.names(averaged=True):     # and they go on alike, independently
        assert torch.equal(c.average(n), e.average(n)), n
    # one pickle of model and EMA together keeps them together
    both = pickle.loads(pickle.dumps({"model": m, "ema": e}))
    assert both["ema"].model is both["model"]
    e.apply_shadow()
    with pytest.raises(ema.StateError, match="restore"):
        copy.deepcopy(e)
    e.restore()


def test_tf_class_errors_name_python_calls():
    w = np.ones(2, np.float32)
    t = ema.ExponentialMovingAverage(0.5)
    t.apply({"w": w})
    t.swap()
    for call in (t.apply, t.store, lambda: t.save("/tmp/never-written.safetensors")):
        with pytest.raises(ema.StateError) as ex:
            call()
        assert "ema_" not in str(ex.value) and "swap()" in str(ex.value), str(ex.value)
    t.swap()
    t.store()
    with pytest.raises(ema.StateError) as ex:
        t.store()
    assert "ema_" not in str(ex.value) and "restore()" in str(ex.value)
