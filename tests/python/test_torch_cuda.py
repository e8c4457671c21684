"""tests/python/test_torch_cuda.py: ema.torch on a CUDA model. Skipped
without a CUDA device (Debian's torch is CPU-only; CI has none): the same
staging and asynchronous logic is tested on CPU tensors in
test_torch_offload.py. Run on a GPU machine with tests/python/gpu_check.py."""
import pytest

torch = pytest.importorskip("torch")

if not torch.cuda.is_available():
    pytest.skip("no CUDA device here (CPU-only torch or no GPU): the CUDA path of ema.torch is not run; "
                "its staging and asynchronous logic is tested on CPU tensors in test_torch_offload.py",
                allow_module_level=True)

from ema import _lib  # noqa: E402
from ema.torch import EMA, DeviceEMA, OffloadEMA  # noqa: E402

nn = torch.nn
dev = torch.device("cuda")


def net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(32, 64), nn.BatchNorm1d(64), nn.ReLU(), nn.Linear(64, 10))


def train_step(model, opt, i):
    g = torch.Generator(device="cuda").manual_seed(i)
    x = torch.randn(16, 32, device=dev, generator=g)
    loss = model(x).square().mean()
    opt.zero_grad()
    loss.backward()
    opt.step()


def test_class_by_device():
    m = net().to(dev)
    assert isinstance(EMA(m, 0.9), DeviceEMA)
    assert isinstance(EMA(m, 0.9, device="cuda"), DeviceEMA)
    assert isinstance(EMA(m, 0.9, device="cpu"), OffloadEMA)


@pytest.mark.skipif(not _lib.has("ema_update_async_staged"), reason="libema without asynchronous updates")
@pytest.mark.parametrize("kw", [dict(decay=0.9), dict(decay=0.999, warmup="inverse_power"),
                                dict(decay=0.9, update_every=2)], ids=str)
def test_offload_equals_the_synchronous_ema_of_the_same_values(kw):
    g = net().to(dev)
    opt = torch.optim.SGD(g.parameters(), lr=0.1)
    host = net()
    host.load_state_dict(g.state_dict())
    eg = EMA(g, device="cpu", **kw).register()
    eh = EMA(host, **kw).register()
    for i in range(6):
        train_step(g, opt, i)
        eg.update()                                   # returns before the update is done
        with torch.no_grad():                         # the reference: the same values, synchronously
            for (n, a), b in zip(g.state_dict().items(), host.state_dict().values()):
                b.copy_(a.cpu())
        eh.update()
    eg.wait()
    for n in eh.names(averaged=True):
        assert torch.equal(eg.average(n), eh.average(n)), n
        assert eg.average(n).device.type == "cpu"


@pytest.mark.skipif(not _lib.has("ema_update_async_staged"), reason="libema without asynchronous updates")
def test_offload_swap_copies_host_to_device_and_back():
    g = net().to(dev)
    opt = torch.optim.SGD(g.parameters(), lr=0.1)
    e = EMA(g, 0.9, device="cpu").register()
    for i in range(4):
        train_step(g, opt, i)
        e.update()
    train = {k: v.clone() for k, v in g.state_dict().items()}
    with e.average_parameters():                       # waits for the update in flight first
        assert g[0].weight.is_cuda
        assert torch.equal(g[0].weight.cpu(), e.average("0.weight"))
    for k, v in g.state_dict().items():
        assert torch.equal(v, train[k]), k


def test_device_averages_agree_with_libema_within_rounding():
    g = net().to(dev)
    opt = torch.optim.SGD(g.parameters(), lr=0.1)
    host = net()
    host.load_state_dict(g.state_dict())
    eg = EMA(g, 0.9).register()
    eh = EMA(host, 0.9).register()
    for i in range(6):
        train_step(g, opt, i)
        eg.update()
        with torch.no_grad():
            for a, b in zip(g.state_dict().values(), host.state_dict().values()):
                b.copy_(a.cpu())
        eh.update()
    for n in eh.names(averaged=True):
        assert eg.average(n).is_cuda
        assert torch.allclose(eg.average(n).cpu(), eh.average(n), rtol=1e-5, atol=1e-6), n
