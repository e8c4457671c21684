"""tests/python/test_torch_ema.py: ema.torch.EMA against Debian's PyTorch.

The same sequence through torch.optim.swa_utils.AveragedModel and through
the seeds' hand-written EMA class; BatchNorm buffers copied, not averaged;
the seeds' flow end to end (train, evaluate with average_parameters, save,
load the averages into a fresh model, same outputs bit for bit); replaced
storage; DataParallel / torch.compile prefixes; every refusal.
"""
import copy
import io

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import ema  # noqa: E402
from ema.torch import EMA, canonical_name  # noqa: E402
from reference_ema import SeedEMA  # noqa: E402

assert ema.torch.EMA is EMA  # the lazy attribute and the module agree

nn = torch.nn


def small_net(seed=0, bn=True):
    torch.manual_seed(seed)
    layers = [nn.Linear(6, 16)]
    if bn:
        layers.append(nn.BatchNorm1d(16))
    layers += [nn.ReLU(), nn.Linear(16, 3)]
    return nn.Sequential(*layers)


def data(seed=1, n=64):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, generator=g)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()
    return x, y


def train_steps(model, opt, ema_objs, steps, seed=1):
    x, y = data(seed)
    model.train()
    for i in range(steps):
        xb, yb = x[(i * 16) % 64:(i * 16) % 64 + 16], y[(i * 16) % 64:(i * 16) % 64 + 16]
        loss = nn.functional.cross_entropy(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        for e in ema_objs:
            e()


# --------------------------------------------------------------------------
# Against PyTorch's own averaging
# --------------------------------------------------------------------------

def test_ten_steps_match_averaged_model_and_seed_class():
    decay = 0.9
    model = small_net(bn=False)
    mine = EMA(model, decay)
    mine.register()
    swa = torch.optim.swa_utils.AveragedModel(
        model, avg_fn=lambda avg, p, n: decay * avg + (1.0 - decay) * p)
    swa.update_parameters(model)       # AveragedModel's first update copies the parameters
    seed = SeedEMA(model, decay)
    seed.register()
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    train_steps(model, opt, [mine.update, lambda: swa.update_parameters(model), seed.update], 10)
    swa_params = dict(swa.module.named_parameters())
    for name, p in model.named_parameters():
        ours = mine.average(name)
        assert ours.dtype == torch.float32 and ours.shape == p.shape
        torch.testing.assert_close(ours, swa_params[name].detach(), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(ours, seed.shadow[name], rtol=1e-5, atol=1e-6)
        assert not torch.equal(ours, p.detach())          # it really averaged


def test_tensorflow_order_bit_exact_in_torch():
    """The update is shadow -= (1 - d) * (shadow - param) in float32."""
    p = nn.Parameter(torch.tensor([0.0, 1.0, -3.0]))
    m = nn.Module()
    m.p = p
    e = EMA(m, 0.99, num_updates=1).register()
    with torch.no_grad():
        p.copy_(torch.tensor([1.0, 2.0, 5.0]))
    shadow = torch.tensor([0.0, 1.0, -3.0])
    d = torch.tensor(min(np.float32(0.99), np.float32(2) / np.float32(11)), dtype=torch.float32)
    for _ in range(3):
        e.update()
        shadow = shadow - (shadow - p.detach()) * (torch.tensor(1.0) - d)
        assert torch.equal(e.average("p"), shadow)
    assert e.average("p")[0].item() == np.float32("0.99398947")


def test_batchnorm_buffers_copied_not_averaged(tmp_path):
    model = small_net()
    bn = model[1]
    # the default is timm's: floating buffers averaged, integer ones copied
    d = EMA(small_net(), 0.5).register()
    assert "1.running_mean" in d.names(averaged=True) and "1.num_batches_tracked" in d.names(averaged=False)
    e = EMA(model, 0.5, buffers="copy").register()
    assert "1.running_mean" in e.names(averaged=False)
    assert "1.num_batches_tracked" in e.names(averaged=False)
    assert "1.weight" in e.names(averaged=True)
    start_mean = bn.running_mean.clone()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    train_steps(model, opt, [e.update], 6)
    live_mean, live_var = bn.running_mean.clone(), bn.running_var.clone()
    assert not torch.equal(live_mean, start_mean)
    avg_w = e.average("1.weight").clone()
    with e.average_parameters():
        # parameters hold the averages; the statistics are the model's current ones
        assert torch.equal(bn.weight.detach(), avg_w)
        assert torch.equal(bn.running_mean, live_mean) and torch.equal(bn.running_var, live_var)
        assert int(bn.num_batches_tracked) == 6
    p = tmp_path / "bn.safetensors"
    e.save(p)
    keys = set(ema.open_file(p).keys())
    assert "1.running_mean" in keys and "1.running_mean/ExponentialMovingAverage" not in keys
    assert "1.weight/ExponentialMovingAverage" in keys
    assert ema.read_safetensors(p)["1.num_batches_tracked"].dtype == np.int64
    # buffers="average" averages them like AveragedModel(use_buffers=True)
    m2 = small_net()
    e2 = EMA(m2, 0.5, buffers="average").register()
    assert "1.running_mean" in e2.names(averaged=True)
    assert "1.num_batches_tracked" in e2.names(averaged=False)
    m3 = small_net()
    e3 = EMA(m3, 0.5, buffers="ignore").register()
    assert "1.running_mean" not in e3.names()
    assert ("1.running_mean", "floating buffer (buffers='ignore')") in e3.skipped


# --------------------------------------------------------------------------
# The seeds' flow, end to end
# --------------------------------------------------------------------------

def evaluate(model):
    model.eval()
    x, _ = data(seed=7, n=32)
    with torch.no_grad():
        out = model(x)
    model.train()
    return out


def test_seeds_flow_end_to_end(tmp_path):
    model = small_net(seed=0)
    e = EMA(model, 0.9)
    e.register()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    train_steps(model, opt, [e.update], 20)
    trained = {k: v.clone() for k, v in model.state_dict().items()}
    ptrs = {k: p.data_ptr() for k, p in model.named_parameters()}
    raw = evaluate(model)
    with e.average_parameters():
        averaged = evaluate(model)
        assert all(p.data_ptr() == ptrs[k] for k, p in model.named_parameters())  # in place
    assert not torch.equal(raw, averaged)
    for k, v in model.state_dict().items():               # training values back, bit for bit
        assert torch.equal(v, trained[k]), k
    e.apply_shadow()
    assert torch.equal(evaluate(model), averaged)
    e.restore()
    path = tmp_path / "ema.safetensors"
    e.save(path)
    # a fresh model of the same shape, other initial values
    fresh = small_net(seed=123)
    fe = EMA(fresh, 0.9).register()
    fe.load_averages_into_model(path)
    assert torch.equal(evaluate(fresh), averaged)
    # the inference file route: extract the averages, load with plain torch
    inf = tmp_path / "inference.safetensors"
    ema.extract_averages(path, inf)
    sd = {k: torch.from_numpy(v) for k, v in ema.read_safetensors(inf).items()}
    other = small_net(seed=99)
    other.load_state_dict(sd)
    assert torch.equal(evaluate(other), averaged)


def test_resume_from_checkpoint_continues_exactly(tmp_path):
    model = small_net(seed=0)
    e = EMA(model, 0.8, num_updates=0).register()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    train_steps(model, opt, [lambda: e.update(num_updates=e.num_updates + 1)], 5)
    path = tmp_path / "resume.safetensors"
    e.save(path)
    twin = small_net(seed=5)
    te = EMA(twin, 0.3).register()
    te.load(path)
    assert te.decay == 0.8 and te.num_updates == 5
    for (k, a), b in zip(model.state_dict().items(), twin.state_dict().values()):
        assert torch.equal(a, b), k
    opt2 = torch.optim.SGD(twin.parameters(), lr=0.1)
    train_steps(model, opt, [lambda: e.update(num_updates=e.num_updates + 1)], 4, seed=3)
    train_steps(twin, opt2, [lambda: te.update(num_updates=te.num_updates + 1)], 4, seed=3)
    for name in e.names(averaged=True):
        assert torch.equal(e.average(name), te.average(name)), name


def test_state_dict_round_trip_through_torch_save():
    for zero_debias in (False, True):
        model = small_net(seed=0)
        e = EMA(model, 0.7, zero_debias=zero_debias, num_updates=3).register()
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        train_steps(model, opt, [e.update], 4)
        buf = io.BytesIO()
        torch.save({"model": model.state_dict(), "ema": e.state_dict()}, buf)
        buf.seek(0)
        ck = torch.load(buf)
        twin = small_net(seed=42)
        twin.load_state_dict(ck["model"])
        te = EMA(twin, 0.1, zero_debias=zero_debias).register()
        te.load_state_dict(ck["ema"])
        assert (te.decay, te.num_updates) == (0.7, 3)
        for name in e.names(averaged=True):
            assert torch.equal(e.average(name), te.average(name)), name
        train_steps(model, opt, [e.update], 2, seed=4)
        opt2 = torch.optim.SGD(twin.parameters(), lr=0.1)
        train_steps(twin, opt2, [te.update], 2, seed=4)
        for name in e.names(averaged=True):
            assert torch.equal(e.average(name), te.average(name)), (zero_debias, name)
    # a state of another shape is refused and changes nothing
    wide = nn.Sequential(nn.Linear(6, 17))
    we = EMA(wide, 0.5).register()
    before = we.average("0.weight").clone()
    with pytest.raises(ema.MismatchError):
        we.load_state_dict(EMA(nn.Sequential(nn.Linear(6, 16)), 0.5).register().state_dict())
    assert torch.equal(we.average("0.weight"), before)
    with pytest.raises(ValueError):
        we.load_state_dict({"shadow": {}})


# --------------------------------------------------------------------------
# Zero copy, storage changes
# --------------------------------------------------------------------------

def test_zero_copy_views_and_in_place_swap():
    model = small_net(bn=False)
    e = EMA(model, 0.5).register()
    w = model[0].weight
    view = e.average_view("0.weight")
    ptr = view.data_ptr()
    with torch.no_grad():
        w.add_(2.0)                        # the optimizer's in-place update
    e.update()
    assert view.data_ptr() == ptr == e.average_view("0.weight").data_ptr()
    assert e.average("0.weight").data_ptr() != ptr          # average() is a copy
    torch.testing.assert_close(view, w.detach() - 1.0)     # the old view shows the update
    expected = view.clone()
    training = w.detach().clone()
    wptr = w.data_ptr()
    with e.average_parameters() as m:
        assert m is model
        assert w.data_ptr() == wptr and torch.equal(w.detach(), expected)
    assert torch.equal(w.detach(), training)
    shadow = e.shadow
    assert set(shadow) == {"0.weight", "0.bias", "2.weight", "2.bias"}
    assert torch.equal(shadow["0.weight"], view) and shadow["0.weight"].data_ptr() != ptr
    del e, m
    import gc
    gc.collect()
    assert torch.equal(view, expected)     # the view kept the library context alive


def test_replaced_storage_is_detected_then_reregistered():
    model = small_net(bn=False)
    e = EMA(model, 0.5).register()
    with torch.no_grad():
        model[0].weight.add_(1)
    e.update()
    avg = {n: e.average(n).clone() for n in e.names(averaged=True)}
    model[0].weight.data = model[0].weight.data.clone()   # new storage, same values
    for call in (e.update, e.apply_shadow, lambda: e.save("/tmp/never.safetensors")):
        with pytest.raises(ema.StorageChangedError) as ex:
            call()
        assert "'0.weight'" in str(ex.value) and "reregister" in str(ex.value)
    assert not e.applied
    e.reregister()
    for n in avg:
        assert torch.equal(e.average(n), avg[n]), n
    e.update()
    # a new nn.Parameter object is detected too
    model[2].bias = nn.Parameter(torch.zeros(3))
    with pytest.raises(ema.StorageChangedError, match="'2.bias'"):
        e.update()
    # on_replaced="reregister" carries the averages over by itself, to new dtypes too
    m2 = small_net(bn=False)
    e2 = EMA(m2, 0.5, on_replaced="reregister").register()
    with torch.no_grad():
        m2[0].weight.mul_(3)
    e2.update()
    before = {n: e2.average(n).clone() for n in e2.names(averaged=True)}
    m2.double()
    with torch.no_grad():
        m2[0].weight.add_(1)
    e2.update()
    for n in before:
        a = e2.average(n)
        assert a.dtype == torch.float64
        p = dict(m2.named_parameters())[n].detach()
        torch.testing.assert_close(a, 0.5 * before[n].double() + 0.5 * p)


def test_reregister_with_zero_debias_is_exact():
    ref_model = small_net(bn=False)
    model = copy.deepcopy(ref_model)
    ref = EMA(ref_model, 0.9, zero_debias=True).register()
    e = EMA(model, 0.9, zero_debias=True, on_replaced="reregister").register()
    for step in range(4):
        for m, x in ((ref_model, ref), (model, e)):
            with torch.no_grad():
                for p in m.parameters():
                    p.add_(0.25 * (step + 1))
            x.update()
        if step == 1:
            for p in model.parameters():
                p.data = p.data.clone()
    for n in ref.names(averaged=True):
        assert torch.equal(ref.average(n), e.average(n)), n


# --------------------------------------------------------------------------
# Wrapped models
# --------------------------------------------------------------------------

class Wrapper(nn.Module):
    def __init__(self, inner, attr):
        super().__init__()
        setattr(self, attr, inner)

    def forward(self, x):
        return getattr(self, "module", None)(x) if hasattr(self, "module") else self._orig_mod(x)


def test_canonical_names():
    assert canonical_name("module.fc.weight") == "fc.weight"
    assert canonical_name("_orig_mod.fc.weight") == "fc.weight"
    assert canonical_name("_orig_mod.module.fc.weight") == "fc.weight"
    assert canonical_name("module._orig_mod.block._orig_mod.fc.weight") == "block.fc.weight"
    assert canonical_name("encoder.module.weight") == "encoder.module.weight"


@pytest.mark.parametrize("wrap", ["module", "_orig_mod", "dataparallel", "both"])
def test_wrapped_models_share_checkpoints(tmp_path, wrap):
    bare = small_net(seed=0)
    if wrap == "dataparallel":
        wrapped = nn.DataParallel(bare)        # CPU: forwards to the module
    elif wrap == "both":
        wrapped = Wrapper(nn.DataParallel(bare), "_orig_mod")
    else:
        wrapped = Wrapper(bare, wrap)
    e = EMA(wrapped, 0.5).register()
    assert "0.weight" in e.names() and all(not n.startswith(("module", "_orig")) for n in e.names())
    opt = torch.optim.SGD(wrapped.parameters(), lr=0.1)
    train_steps(wrapped, opt, [e.update], 3)
    path = tmp_path / "w.safetensors"
    e.save(path)
    with e.average_parameters():
        want = evaluate(bare)
    fresh = small_net(seed=9)
    EMA(fresh, 0.5).register().load_averages_into_model(path)
    assert torch.equal(evaluate(fresh), want)
    # and back into a wrapped one
    fresh2 = nn.DataParallel(small_net(seed=11))
    EMA(fresh2, 0.5).register().load_averages_into_model(path)
    assert torch.equal(evaluate(fresh2.module), want)


# --------------------------------------------------------------------------
# Refusals and options
# --------------------------------------------------------------------------

def test_refusals():
    model = small_net()
    e = EMA(model, 0.9)
    with pytest.raises(ema.StateError, match="register"):
        e.update()
    e.register()
    with pytest.raises(ema.StateError, match="already"):
        e.register()
    with pytest.raises(ema.StateError, match="without apply_shadow"):
        e.restore()
    with pytest.raises(RuntimeError):
        with e.average_parameters():
            e.update()
    assert not e.applied
    w = model[0].weight.detach().clone()
    with pytest.raises(ZeroDivisionError):
        with e.average_parameters():
            1 / 0
    assert torch.equal(model[0].weight.detach(), w) and not e.applied
    e.apply_shadow()
    with pytest.raises(ema.StateError, match="twice"):
        e.apply_shadow()
    e.restore()
    with pytest.raises(KeyError):
        e.average("nope")
    with pytest.raises(KeyError, match="not averaged"):
        e.average("1.num_batches_tracked")
    with pytest.raises(ValueError):
        EMA(model, 1.5)
    with pytest.raises(ValueError):
        EMA(model, 0.9, buffers="sometimes")
    with pytest.raises(ValueError):
        EMA("not a model", 0.9)


def test_unsuitable_tensors_are_refused_before_registering():
    m = nn.Module()
    m.a = nn.Parameter(torch.zeros(3))
    m.t = nn.Parameter(torch.zeros(4, 6)[:, ::2])      # a strided view with gaps
    with pytest.raises(ValueError, match="gaps"):
        EMA(m, 0.9).register()
    meta = nn.Linear(3, 3, device="meta")               # stands for a CUDA model here
    with pytest.raises(ValueError, match="is on meta"):
        EMA(meta, 0.9).register()
    if torch.cuda.is_available():                       # pragma: no cover - CPU-only Debian torch
        # a CUDA model keeps its averages on the device (or in host memory with device="cpu")
        assert type(EMA(nn.Linear(3, 3).cuda(), 0.9)).__name__ == "DeviceEMA"
    shared = nn.Module()
    base = torch.zeros(6)
    shared.a = nn.Parameter(base[:4])
    shared.b = nn.Parameter(base[2:])
    with pytest.raises(ValueError, match="share memory"):
        EMA(shared, 0.9).register()
    odd = nn.Module()
    odd.w = nn.Parameter(torch.ones(2))
    odd.register_buffer("mask", torch.ones(2, dtype=torch.bool))
    odd.register_buffer("scratch", torch.ones(2), persistent=False)
    odd.frozen = nn.Parameter(torch.ones(2), requires_grad=False)
    e = EMA(odd, 0.9).register()
    assert e.names(averaged=True) == ["w"] and e.names(averaged=False) == ["frozen"]
    assert dict(e.skipped) == {"mask": "dtype torch.bool cannot be carried",
                               "scratch": "non-persistent buffer"}
    tied = nn.Module()
    tied.emb = nn.Embedding(5, 4)
    tied.head = nn.Linear(4, 5, bias=False)
    tied.head.weight = tied.emb.weight                  # tied weights: one tensor, registered once
    assert EMA(tied, 0.9).register().names() == ["emb.weight"]


def test_threads_and_half_precision(tmp_path):
    outs = []
    for threads in (1, 2):
        model = small_net(seed=0)
        e = EMA(model, 0.9, threads=threads).register()
        assert e.threads == threads
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        train_steps(model, opt, [e.update], 5)
        outs.append(torch.cat([e.average(n).reshape(-1) for n in e.names(averaged=True)]))
    assert torch.equal(outs[0], outs[1])
    m = nn.Linear(4, 4).to(torch.bfloat16)
    e = EMA(m, 0.9999).register()
    assert e.average("weight").dtype == torch.float32     # float32 shadows for bf16
    with torch.no_grad():
        m.weight.add_(1)
    for _ in range(3):
        e.update()
    assert not torch.equal(e.average("weight").to(torch.bfloat16), m.weight.detach())
    avg = e.average("weight").clone()
    with e.average_parameters():
        # the swap rounds the float32 average to the model's bf16 (to nearest even, as torch)
        assert torch.equal(m.weight.detach(), avg.to(torch.bfloat16))
    p = tmp_path / "bf16.safetensors"
    e.save(p)
    fresh = nn.Linear(4, 4).to(torch.bfloat16)
    EMA(fresh, 0.9).register().load_averages_into_model(p)
    with e.average_parameters():
        assert torch.equal(fresh.weight.detach(), m.weight.detach())


def test_tf_class_with_torch_tensors():
    w = torch.zeros(3)
    e = ema.ExponentialMovingAverage(0.5)
    e.apply({"w": w})
    w += 2
    e.apply()
    a = e.average("w")
    assert isinstance(a, torch.Tensor) and torch.equal(a, torch.ones(3))
    with pytest.raises(TypeError, match="integer"):
        e.apply({"step": torch.zeros((), dtype=torch.int64)})
    with pytest.raises(TypeError, match="bool"):
        e.apply({"m": torch.zeros(2, dtype=torch.bool)})
    with pytest.raises(ValueError, match="C-contiguous"):
        e.apply({"t": torch.zeros(3, 2).t()})
    b = torch.zeros(4, dtype=torch.bfloat16)
    e.apply({"b": b})
    assert e.average("b").dtype == torch.float32
    p = nn.Parameter(torch.ones(2))
    e.apply({"p": p})
    p.data = torch.zeros(2)                  # new storage: refused, nothing updated
    before = e.average("p").clone()
    for call in (e.apply, lambda: e.apply({"p": p}), e.swap):
        with pytest.raises(ema.StorageChangedError, match="'p'"):
            call()
    assert torch.equal(e.average("p"), before)


def test_reregister_same_kind_keeps_averages_without_copy():
    # param.data = new memory of the same dtype and shape: reregister()
    # points the library at the new memory (ema_retarget) and keeps every
    # average and counter as it is; afterwards it evolves bit for bit like a
    # twin whose storage was never replaced.
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    twin = copy.deepcopy(m)
    e, et = EMA(m, decay=0.75, zero_debias=True), EMA(twin, decay=0.75, zero_debias=True)
    e.register()
    et.register()

    def step():
        with torch.no_grad():
            for p, q in zip(m.parameters(), twin.parameters()):
                p.add_(0.5)
                q.add_(0.5)
        e.update()
        et.update()

    for _ in range(3):
        step()
    old_ctx = e._ctx
    m[0].weight.data = m[0].weight.data.clone()
    m[1].bias = torch.nn.Parameter(m[1].bias.detach().clone())
    with pytest.raises(ema.StorageChangedError):
        e.update()
    e.reregister()
    assert e._ctx is old_ctx  # the same library context: nothing was re-created
    for _ in range(2):
        step()
    mine, theirs = e.state_dict()["tensors"], et.state_dict()["tensors"]
    assert mine.keys() == theirs.keys()
    assert all(torch.equal(mine[k], theirs[k]) for k in mine)
