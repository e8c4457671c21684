"""tests/python/test_torch_state_fast.py: the fast paths of ema.torch.EMA.

state_dict() from one ema_save_state_buffer (zero-copy views of the
library's buffer, kept alive by the tensors), load_state_dict() through
ema_load_state_buffer (the model untouched) with the header built once per
registration, and update()'s one-pass check: each gives what the slow
paths give, and each change the slow checks caught is still caught.
"""
import gc
import io

import pytest

torch = pytest.importorskip("torch")

import ema  # noqa: E402
from ema import _torch_state  # noqa: E402
from ema.errors import EmaError, StateError, StorageChangedError  # noqa: E402
from ema.torch import EMA  # noqa: E402

nn = torch.nn


def net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 3).double())


def train(model, e, steps, seed=1):
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.1)
        e.update()


def test_state_dict_is_a_copy_that_outlives_the_ema():
    m = net()
    e = EMA(m, 0.9).register()
    train(m, e, 3)
    sd = e.state_dict()
    want = {k: v.clone() for k, v in sd["tensors"].items()}
    train(m, e, 2)                       # later updates do not reach the state taken
    for k, v in sd["tensors"].items():
        assert torch.equal(v, want[k]), k
    e.close()
    del e
    gc.collect()                         # the library's buffer lives as long as the tensors
    for k, v in sd["tensors"].items():
        assert torch.equal(v, want[k]), k


@pytest.mark.parametrize("zero_debias", [False, True])
def test_state_round_trip_with_several_dtypes(zero_debias):
    m = net()
    e = EMA(m, 0.9, zero_debias=zero_debias).register()
    train(m, e, 4)
    sd = e.state_dict()
    dtypes = {v.dtype for v in sd["tensors"].values()}
    assert len(dtypes) >= 2              # float32 and float64 (and the counters with zero_debias)
    buf = io.BytesIO()
    torch.save(sd, buf)                  # views of one storage as several dtypes would be refused
    buf.seek(0)
    back = torch.load(buf)
    m2 = net(seed=5)
    before = {k: v.clone() for k, v in m2.state_dict().items()}
    e2 = EMA(m2, 0.9, zero_debias=zero_debias).register()
    e2.load_state_dict(back)
    for k, v in m2.state_dict().items():  # the model keeps its own values
        assert torch.equal(v, before[k]), k
    for n in e.names(averaged=True):
        assert torch.equal(e.average(n), e2.average(n)), n
    assert e2.num_updates == e.num_updates and e2.step == e.step
    e2.load_state_dict(back)             # the cached header: same result again
    for n in e.names(averaged=True):
        assert torch.equal(e.average(n), e2.average(n)), n
    train(m, e, 2)
    train(m2, e2, 0)


def test_state_dict_uses_the_state_buffer():
    if not _torch_state.state_only():
        pytest.skip("this libema has no ema_save_state_buffer")
    m = net()
    e = EMA(m, 0.9).register()
    e.update()
    sd = e.state_dict()
    names = set(e.names())
    assert not names & set(sd["tensors"])   # no model tensor in the EMA state
    # the float32 averages are views of one buffer (no copy per tensor)
    f32 = [v for v in sd["tensors"].values() if v.dtype == torch.float32]
    assert len({v.untyped_storage().data_ptr() if hasattr(v, "untyped_storage") else v.storage().data_ptr()
                for v in f32}) == 1


def test_load_state_dict_refuses_a_wrong_dtype_and_changes_nothing():
    m = net()
    e = EMA(m, 0.9).register()
    train(m, e, 2)
    sd = e.state_dict()
    e.load_state_dict(sd)                # fills the header cache
    key = next(k for k, v in sd["tensors"].items() if v.dtype == torch.float32)
    bad = dict(sd, tensors=dict(sd["tensors"], **{key: sd["tensors"][key].to(torch.int32)}))
    keep = {n: e.average(n) for n in e.names(averaged=True)}
    with pytest.raises(EmaError):
        e.load_state_dict(bad)
    for n, v in keep.items():
        assert torch.equal(e.average(n), v), n


def test_quick_check_catches_what_the_slow_one_did():
    m = net()
    e = EMA(m, 0.9).register()
    e.update()
    assert e._unchanged()
    m[0].weight.requires_grad_(False)
    assert not e._unchanged()
    with pytest.raises(StateError):
        e.update()
    m[0].weight.requires_grad_(True)
    e.update()
    m[0].bias.data = torch.zeros(8)
    assert not e._unchanged()
    with pytest.raises(StorageChangedError):
        e.update()
    m[0].bias = nn.Parameter(torch.zeros(8))   # a new object, same memory check fails by identity
    assert not e._unchanged()
