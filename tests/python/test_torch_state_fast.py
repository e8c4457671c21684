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


def _spy_parts(monkeypatch):
    """Count the loads that hand the state's tensors to the library where
    they are (ema_load_state_parts)."""
    calls = []
    real = _torch_state._load_parts
    monkeypatch.setattr(_torch_state, "_load_parts", lambda *a: (calls.append(1), real(*a)))
    return calls


def test_load_state_dict_reads_the_tensors_where_they_are(monkeypatch):
    if not ema._lib.has("ema_load_state_parts"):
        pytest.skip("this libema has no ema_load_state_parts")
    calls = _spy_parts(monkeypatch)
    m = net()
    e = EMA(m, 0.9).register()
    train(m, e, 3)
    sd = e.state_dict()
    want = {n: e.average(n).clone() for n in e.names(averaged=True)}
    train(m, e, 2)
    # as state_dict() gave them, then each in a form the fast test refuses
    # (requires_grad, strided, float64 for a float32 average, a Parameter):
    # the same averages come back either way
    odd = {}
    for i, (k, v) in enumerate(sd["tensors"].items()):
        if i % 4 == 0:
            v = v.clone().requires_grad_(v.is_floating_point())
        elif i % 4 == 1:
            v = torch.empty(v.numel() * 2, dtype=v.dtype)[::2].copy_(v.reshape(-1)).view(v.shape) \
                if v.dim() <= 1 else v.t().contiguous().t()
        elif i % 4 == 2 and v.dtype == torch.float32:
            v = v.double()
        odd[k] = v
    for tensors, fast in ((sd["tensors"], True), (odd, False)):
        calls.clear()
        train(m, e, 1)
        e.load_state_dict(dict(sd, tensors=tensors))
        for n, v in want.items():
            assert torch.equal(e.average(n), v), n
        assert calls == [1] if fast else len(calls) <= 1


def test_load_state_dict_from_the_averages_themselves():
    m = net()
    e = EMA(m, 0.9).register()
    train(m, e, 3)
    sd = e.state_dict()
    member = e.members[0]
    own = dict(sd["tensors"])
    for n in e.names(averaged=True):     # the part is the very average it restores
        own[f"{n}/{member}"] = e.average_view(n)
    want = {n: e.average(n).clone() for n in e.names(averaged=True)}
    e.load_state_dict(dict(sd, tensors=own))
    for n, v in want.items():
        assert torch.equal(e.average(n), v), n


def test_a_reshaped_or_retyped_view_of_the_same_memory_is_caught():
    m = net()
    e = EMA(m, 0.9).register()
    e.update()
    w = m[0].weight
    w.data = w.data.view(-1)             # same memory, another shape
    assert e._replaced() and not e._replaced(full=False)
    with pytest.raises(StorageChangedError):
        e.state_dict()
    w.data = w.data.view(8, 4)
    e.state_dict()
    b = m[1].running_mean                # an averaged buffer: its memory seen as int32
    b.data = b.data.view(torch.int32)
    with pytest.raises(StorageChangedError):
        e.state_dict()
    b.data = b.data.view(torch.float32)
    e.state_dict()


def _storage_ptr(v):
    return v.untyped_storage().data_ptr() if hasattr(v, "untyped_storage") else v.storage().data_ptr()


@pytest.mark.parametrize("zero_debias", [False, True])
def test_large_tensors_stream_into_tensors_of_their_own(monkeypatch, zero_debias):
    if not ema._lib.has("ema_save_state_writer"):
        pytest.skip("this libema has no ema_save_state_writer")
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(512, 512), nn.Linear(512, 256).double())   # 1 MiB averages
    e = EMA(m, 0.9, zero_debias=zero_debias).register()
    train(m, e, 3)
    assert not _torch_state._small_tensors(e._ctx)
    big = e.state_dict()
    f32 = [v for v in big["tensors"].values() if v.dtype == torch.float32]
    assert len({_storage_ptr(v) for v in f32}) == len(f32)   # one storage each
    monkeypatch.setattr(_torch_state, "_small_tensors", lambda ctx: True)
    one = e.state_dict()                                     # the one-buffer path: same state
    assert big["metadata"] == one["metadata"] and big["tensors"].keys() == one["tensors"].keys()
    for k, v in big["tensors"].items():
        assert v.dtype == one["tensors"][k].dtype and torch.equal(v, one["tensors"][k]), k
    buf = io.BytesIO()
    torch.save(big, buf)
    buf.seek(0)
    m2 = nn.Sequential(nn.Linear(512, 512), nn.Linear(512, 256).double())
    e2 = EMA(m2, 0.9, zero_debias=zero_debias).register()
    e2.load_state_dict(torch.load(buf))
    for n in e.names(averaged=True):
        assert torch.equal(e.average(n), e2.average(n)), n
