"""tests/python/test_torch_offload.py: EMA(model, ..., device="cpu") (the
staging + asynchronous path, OffloadEMA) on CPU tensors, bit-identical to
the synchronous EMA; the averages on the device (DeviceEMA) against libema
within float rounding; the choice of class by device=. The CUDA versions
are in test_torch_cuda.py (skipped without a CUDA device)."""
import io

import pytest

torch = pytest.importorskip("torch")

from ema import _lib  # noqa: E402
from ema.errors import InvalidArgumentError, StateError  # noqa: E402
from ema.torch import EMA, DeviceEMA, OffloadEMA  # noqa: E402

nn = torch.nn

pytestmark = pytest.mark.skipif(not _lib.has("ema_update_async_staged"),
                                reason="this libema has no asynchronous updates")


def net(seed=0, dtype=torch.float32):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 3)).to(dtype)


def step(model, i):
    g = torch.Generator().manual_seed(100 + i)
    x = torch.randn(8, 5, generator=g, dtype=next(model.parameters()).dtype)
    model.train()
    loss = model(x).square().mean()
    model.zero_grad()
    loss.backward()
    with torch.no_grad():
        for p in model.parameters():
            p.sub_(0.05 * p.grad)


def run_pair(steps=7, dtype=torch.float32, **kw):
    a, b = net(dtype=dtype), net(dtype=dtype)
    ea = EMA(a, **kw).register()
    eb = EMA(b, device="cpu", **kw).register()
    assert isinstance(eb, OffloadEMA) and not isinstance(ea, OffloadEMA)
    for i in range(steps):
        step(a, i)
        step(b, i)
        ea.update()
        eb.update()
    return a, b, ea, eb


def same_averages(ea, eb):
    for k in range(len(ea.members)):
        for n in ea.names(averaged=True):
            assert torch.equal(ea.average(n, k), eb.average(n, k)), (n, k)


@pytest.mark.parametrize("kw", [
    dict(decay=0.9),
    dict(decay=0.99, warmup="tf"),
    dict(decay=0.999, warmup="inverse_power", min_decay=0.5),
    dict(decay=0.9, update_every=3),
    dict(decay=(0.9, 0.99)),
    dict(sigma_rel=0.1),
    dict(decay=0.9, zero_debias=True),
    dict(decay=0.9, buffers="copy"),
], ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()))
def test_staged_async_equals_sync_bit_for_bit(kw):
    a, b, ea, eb = run_pair(**kw)
    same_averages(ea, eb)
    assert ea.step == eb.step


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_other_dtypes_bit_for_bit(dtype):
    _, _, ea, eb = run_pair(dtype=dtype, decay=0.9)
    same_averages(ea, eb)


def test_update_returns_with_an_update_in_flight_and_wait_collects_it():
    _, b, ea, eb = run_pair(steps=3, decay=0.9)
    eb.update()                         # in flight (or done): wait() is always safe
    eb.wait()
    eb.wait()                           # nothing in flight: returns at once
    assert not eb._pending
    assert eb._pinned, "the staging comes from the EMA's own allocator (pinned for a CUDA model)"


def test_swap_puts_averages_in_the_model_and_restores_training_values():
    a, b, ea, eb = run_pair(decay=0.9)
    train = {k: v.clone() for k, v in b.state_dict().items()}
    with eb.average_parameters():
        for n in ea.names(averaged=True):
            got = dict(b.named_parameters()).get(n)
            if got is None:
                got = dict(b.named_buffers())[n]
            assert torch.equal(got, ea.average(n)), n
        with pytest.raises(StateError):
            eb.update()
    for k, v in b.state_dict().items():
        assert torch.equal(v, train[k]), k
    step(b, 50)                          # training goes on after the swap, still bit-identical
    step(a, 50)
    ea.update()
    eb.update()
    same_averages(ea, eb)


def test_state_dict_save_and_load(tmp_path):
    a, b, ea, eb = run_pair(decay=0.9)
    sd = eb.state_dict()
    buf = io.BytesIO()
    torch.save(sd, buf)
    buf.seek(0)
    c = net(seed=3)
    ec = EMA(c, 0.9, device="cpu").register()
    ec.load_state_dict(torch.load(buf))
    same_averages(ea, ec)
    eb.save(tmp_path / "ck.safetensors")         # the model values saved are the current ones
    d = net(seed=4)
    ed = EMA(d, 0.9, device="cpu").register()
    ed.load(tmp_path / "ck.safetensors")          # ... and land in the model
    for k, v in b.state_dict().items():
        assert torch.equal(d.state_dict()[k], v), k
    same_averages(ea, ed)


def test_device_choice():
    m = net()
    assert type(EMA(m, 0.9)) is EMA
    with pytest.raises(InvalidArgumentError):
        EMA(m, 0.9, device="cuda")             # the model is on the CPU
    with pytest.raises(InvalidArgumentError):
        EMA(m, 0.9, device="nowhere")
    with pytest.raises(InvalidArgumentError):
        EMA.__init__(object.__new__(EMA), m, 0.9, device="cpu")   # the in-place class takes no device


def test_device_averages_agree_with_libema_within_rounding():
    a, b = net(), net()
    ea = EMA(a, 0.9).register()
    eb = DeviceEMA(b, 0.9).register()          # on the CPU here; on the model's device in general
    for i in range(6):
        step(a, i)
        step(b, i)
        ea.update()
        eb.update()
    for n in ea.names(averaged=True):
        assert torch.allclose(ea.average(n), eb.average(n), rtol=1e-6, atol=1e-7), n
    with eb.average_parameters():
        assert torch.equal(b[0].weight, eb.average("0.weight"))
    sd = eb.state_dict()
    c = net(seed=1)
    ec = DeviceEMA(c, 0.9).register()
    ec.load_state_dict(sd)
    assert torch.equal(ec.average("0.weight"), eb.average("0.weight"))
