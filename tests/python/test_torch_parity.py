"""tests/python/test_torch_parity.py: ema.torch.EMA against each peer,
reimplemented from its published formulas and defaults in reference_ema.py,
over real training loops of a small CNN with BatchNorm and a small
Transformer with tied embeddings, for every schedule; plus the peers'
checkpoints both ways.
"""
import math

import pytest

torch = pytest.importorskip("torch")

import ema  # noqa: E402
from ema.torch import EMA  # noqa: E402
import reference_ema as ref  # noqa: E402

nn = torch.nn
TOL = dict(rtol=2e-5, atol=2e-6)   # float32 rounding over the run


class CNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                  nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(8, 4)

    def forward(self, x):
        return self.head(self.body(x))


class TinyLM(nn.Module):
    def __init__(self, vocab=23, d=16):
        super().__init__()
        self.emb = nn.Embedding(vocab, d)
        self.pos = nn.Parameter(torch.zeros(8, d))
        self.block = nn.TransformerEncoderLayer(d, 2, 32, dropout=0.0, batch_first=True)
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab, bias=False)
        self.head.weight = self.emb.weight          # tied

    def forward(self, ids):
        return self.head(self.norm(self.block(self.emb(ids) + self.pos[: ids.shape[1]])))


def make(kind, seed=0):
    torch.manual_seed(seed)
    return CNN() if kind == "cnn" else TinyLM()


def batches(kind, steps, seed=1):
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        if kind == "cnn":
            x = torch.randn(6, 3, 8, 8, generator=g)
            yield x, torch.randint(0, 4, (6,), generator=g)
        else:
            ids = torch.randint(0, 23, (4, 8), generator=g)
            yield ids, torch.roll(ids, -1, 1)


def train(kind, model, steps, after_step):
    opt = torch.optim.Adam(model.parameters(), lr=3e-2)
    model.train()
    for step, (x, y) in enumerate(batches(kind, steps), 1):
        out = model(x)
        loss = nn.functional.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        after_step(step)


def assert_params(e, named, what, member=None):
    n = 0
    for name, value in named:
        torch.testing.assert_close(e.average(name, member), value.detach(), **TOL, msg=f"{what}: {name}")
        n += 1
    assert n


KINDS = ["cnn", "transformer"]


# --------------------------------------------------------------------------
# timm ModelEmaV3
# --------------------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("variant", ["constant", "warmup", "constant_with_step", "exclude_buffers"])
def test_timm_model_ema_v3(kind, variant):
    model = make(kind)
    if variant == "constant":
        peer, ours = ref.TimmModelEmaV3(model, decay=0.9), EMA(model, 0.9)
        call = lambda step: (peer.update(model), ours.update(model))  # noqa: E731
    elif variant == "warmup":
        peer = ref.TimmModelEmaV3(model, decay=0.95, use_warmup=True, warmup_power=3 / 4, update_after_step=2,
                                  min_decay=0.3)
        ours = EMA(model, 0.95, warmup="inverse_power", power=3 / 4, update_after_step=2, min_decay=0.3)
        call = lambda step: (peer.update(model, step), ours.update(model, step))  # noqa: E731
    elif variant == "constant_with_step":
        # timm copies the model at steps <= update_after_step + 1 when given a step:
        # our update_after_step counts the steps that copy
        peer = ref.TimmModelEmaV3(model, decay=0.9, update_after_step=1)
        ours = EMA(model, 0.9, update_after_step=2)
        call = lambda step: (peer.update(model, step), ours.update(model, step))  # noqa: E731
    else:
        peer = ref.TimmModelEmaV3(model, decay=0.9, exclude_buffers=True)
        ours = EMA(model, 0.9, buffers="copy")
        call = lambda step: (peer.update(model), ours.update(model))  # noqa: E731
    ours.register()
    tied = kind == "transformer" and variant != "exclude_buffers"
    if tied:
        # timm lerps every state_dict entry, so a tied weight (emb.weight is
        # head.weight) twice per update; ours averages it once, as its
        # exclude_buffers path (parameters()) and every other peer do
        once = ref.LerpEMA(model, lambda step: peer.get_decay(step if variant != "constant" else None))
        call0 = call
        call = lambda step: (once.update(), call0(step))  # noqa: E731
    train(kind, model, 25, call)
    theirs = peer.module.state_dict()
    mine = ours.state_dict(format="timm")                    # timm's state_dict_ema
    assert mine.keys() == theirs.keys()
    for k, v in theirs.items():
        if k in ("emb.weight", "head.weight") and tied:
            torch.testing.assert_close(mine[k], once.shadow["emb.weight"], **TOL, msg=k)
            assert not torch.allclose(mine[k], v, **TOL)      # timm's double update differs
        elif v.is_floating_point():
            torch.testing.assert_close(mine[k], v, **TOL, msg=k)
        else:
            assert torch.equal(mine[k], v), k
    with torch.no_grad():
        x = next(batches(kind, 1, seed=9))[0]
        want = peer.module(x) if not tied else None
        if tied:
            peer.module.emb.weight.copy_(once.shadow["emb.weight"])
            want = peer.module(x)
        torch.testing.assert_close(ours.module(x), want, **TOL)   # ema.module, ema(x)
        torch.testing.assert_close(ours(x), want, **TOL)


# --------------------------------------------------------------------------
# diffusers EMAModel
# --------------------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_diffusers_ema_model_with_warmup(kind):
    model = make(kind)
    peer = ref.DiffusersEMAModel(model.parameters(), decay=0.97, min_decay=0.1, update_after_step=3,
                                 use_ema_warmup=True, inv_gamma=2.0, power=0.75)
    ours = EMA(model, 0.97, min_decay=0.1, update_after_step=3, warmup="inverse_power", inv_gamma=2.0,
               power=0.75, buffers="copy").register()
    train(kind, model, 25, lambda step: (peer.step(model.parameters()), ours.update()))
    assert_params(ours, zip([n for n, _ in model.named_parameters()], peer.shadow_params), "diffusers")
    # diffusers' store / copy_to / restore
    training = [p.detach().clone() for p in model.parameters()]
    ours.store(model.parameters())
    ours.copy_to(model.parameters())
    for p, s in zip(model.parameters(), peer.shadow_params):
        torch.testing.assert_close(p.detach(), s, **TOL)
    ours.restore(model.parameters())
    for p, t in zip(model.parameters(), training):
        assert torch.equal(p.detach(), t)


def test_diffusers_default_warmup_differs_from_tf():
    """diffusers' default (use_ema_warmup=False) is 0 at the first step, then
    min(decay, (1+t)/(10+t)) with t = step - 1; warmup='tf' is TensorFlow's
    min(decay, (1+step)/(10+step)). The README's migration table says so."""
    peer = ref.DiffusersEMAModel([torch.zeros(1)], decay=0.999)
    assert peer.get_decay(1) == 0.0 and peer.get_decay(2) == pytest.approx(2 / 11)
    m = nn.Linear(1, 1, bias=False)
    e = EMA(m, 0.999, warmup="tf").register()
    e.update()
    assert e.effective_decay == pytest.approx(2 / 11)            # TF at num_updates = 1


# --------------------------------------------------------------------------
# ema-pytorch EMA
# --------------------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_ema_pytorch(kind):
    model = make(kind)
    peer = ref.EmaPytorchEMA(model, beta=0.95, update_after_step=4, update_every=1, power=0.8, min_value=0.2)
    ours = EMA(model, 0.95, warmup="inverse_power", update_after_step=4, power=0.8, min_decay=0.2).register()
    train(kind, model, 25, lambda step: (peer.update(), ours.update()))
    assert_params(ours, peer.ema_model.named_parameters(), "ema-pytorch")
    floating = [(n, b) for n, b in peer.ema_model.named_buffers() if b.is_floating_point()]
    if floating:                                     # ema-pytorch averages floating buffers too
        assert_params(ours, floating, "ema-pytorch buffers")
    with torch.no_grad():
        x = next(batches(kind, 1, seed=9))[0]
        torch.testing.assert_close(ours.ema_model(x), peer.ema_model.eval()(x), **TOL)


def test_update_every_uses_the_k_step_decay():
    """update_every=k averages at every k-th step with the product of the k
    per-step decays: on a constant model the curve does not depend on k."""
    curves = {}
    for k in (1, 4):
        m = nn.Linear(3, 1, bias=False)
        with torch.no_grad():
            m.weight.zero_()
        e = EMA(m, 0.9, warmup="inverse_power", update_every=k).register()
        with torch.no_grad():
            m.weight.fill_(1.0)
        for _ in range(16):
            e.update()
        curves[k] = e.average("weight")
        assert e.step == 16
    torch.testing.assert_close(curves[1], curves[4], rtol=1e-6, atol=1e-7)
    m = nn.Linear(2, 1, bias=False)
    e = EMA(m, 0.9, update_every=3).register()
    w0 = m.weight.detach().clone()
    with torch.no_grad():
        m.weight.add_(1.0)
    e.update()
    e.update()
    assert torch.equal(e.average("weight"), w0)        # steps 1 and 2: nothing yet
    e.update()
    torch.testing.assert_close(e.average("weight"), w0 + (1 - 0.9 ** 3), rtol=1e-6, atol=1e-6)


# --------------------------------------------------------------------------
# AveragedModel (PyTorch's own, not a reimplementation)
# --------------------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_averaged_model(kind):
    model = make(kind)
    d = 0.9
    swa = torch.optim.swa_utils.AveragedModel(model, avg_fn=lambda a, p, n: d * a + (1 - d) * p)
    ours = EMA(model, d, buffers="copy").register()
    swa.update_parameters(model)                   # its first update copies
    train(kind, model, 20, lambda step: (swa.update_parameters(model), ours.update()))
    assert_params(ours, swa.module.named_parameters(), "AveragedModel")
    sd = ours.state_dict(format="averaged_model")
    theirs = swa.state_dict()
    assert set(sd) == set(theirs)
    fresh = make(kind, seed=5)
    swa2 = torch.optim.swa_utils.AveragedModel(fresh)
    swa2.load_state_dict(sd)                        # strict, into the peer
    for (n, a), b in zip(swa2.module.named_parameters(), swa.module.parameters()):
        torch.testing.assert_close(a, b, **TOL, msg=n)


# --------------------------------------------------------------------------
# Power-function, half-life and TensorFlow schedules; banks
# --------------------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_power_function_and_half_life_and_bank(kind):
    model = make(kind)
    g05, g10 = ref.sigma_rel_to_gamma(0.05), ref.sigma_rel_to_gamma(0.10)
    peers = {"sigma_rel_0.05": ref.LerpEMA(model, ref.power_decay(g05)),
             "sigma_rel_0.1": ref.LerpEMA(model, ref.power_decay(g10))}
    bank = EMA(model, sigma_rel=(0.05, 0.10), buffers="copy").register()
    assert bank.members == ["sigma_rel_0.05", "sigma_rel_0.1"]
    gamma = EMA(model, gamma=4.0, buffers="copy").register()
    pg = ref.LerpEMA(model, ref.power_decay(4.0))
    half = EMA(model, half_life=5, buffers="copy").register()
    ph = ref.LerpEMA(model, ref.half_life_decay(5))
    decays = EMA(model, (0.8, 0.95), buffers="copy").register()
    pd = {0.8: ref.LerpEMA(model, lambda t: 0.8), 0.95: ref.LerpEMA(model, lambda t: 0.95)}
    tf = EMA(model, 0.99, warmup="tf").register()
    ptf = ref.LerpEMA(model, lambda t: min(0.99, (1 + t) / (10 + t)))
    everyone = list(peers.values()) + [pg, ph, ptf] + list(pd.values())
    train(kind, model, 20, lambda step: ([p.update() for p in everyone], bank.update(), gamma.update(),
                                          half.update(), decays.update(), tf.update()))
    for member, peer in peers.items():
        assert_params(bank, peer.shadow.items(), member, member=member)
    assert_params(bank, peers["sigma_rel_0.1"].shadow.items(), "by index", member=1)
    assert_params(gamma, pg.shadow.items(), "gamma")
    assert_params(half, ph.shadow.items(), "half_life")
    assert_params(tf, ptf.shadow.items(), "tf")
    for k, v in enumerate((0.8, 0.95)):
        assert_params(decays, pd[v].shadow.items(), f"decay {v}", member=k)
    # a bank member swapped in by name
    avg = decays.average("head.weight", "ema_0.95")
    with decays.average_parameters(member="ema_0.95"):
        assert torch.equal(model.head.weight.detach(), avg)


def test_schedule_keywords_are_checked():
    m = nn.Linear(2, 2)
    for kw, match in ((dict(sigma_rel=0.1, gamma=3.0), "give one"), (dict(decay=0.9, sigma_rel=0.1), "give one"),
                      (dict(warmup="linear"), "warmup must be"), (dict(min_decay=0.5), "inverse_power"),
                      (dict(sigma_rel=0.5), "sigma_rel must be"), (dict(update_every=0), "update_every"),
                      (dict(decay=(0.9, 0.99), warmup="tf"), "TensorFlow"), (dict(decay=(0.9, 0.9)), "different names"),
                      (dict(half_life=-1), "half_life")):
        with pytest.raises(ValueError, match=match):
            EMA(m, **kw)
    e = EMA(m, 0.9).register()
    e.update(step=3)
    with pytest.raises(ValueError, match="step must increase"):
        e.update(step=3)
    with pytest.raises(ValueError, match="no average called"):
        e.average("weight", "nope")


# --------------------------------------------------------------------------
# Layouts
# --------------------------------------------------------------------------

def test_channels_last_and_transposed_parameters_are_averaged_in_place(tmp_path):
    torch.manual_seed(0)
    cl = CNN().to(memory_format=torch.channels_last)
    ref_model = CNN()
    ref_model.load_state_dict(cl.state_dict())
    w = cl.body[0].weight
    assert not w.is_contiguous() and w.is_contiguous(memory_format=torch.channels_last)
    m = nn.Module()
    m.t = nn.Parameter(torch.randn(5, 3).t())           # a transpose
    ours, theirs = EMA(cl, 0.8).register(), EMA(ref_model, 0.8).register()
    et = EMA(m, 0.5).register()
    ptr = w.data_ptr()
    for step in range(5):
        for mod in (cl, ref_model):
            with torch.no_grad():
                for p in mod.parameters():
                    p.mul_(0.9).add_(0.1 * (step + 1))
        ours.update()
        theirs.update()
    for n in theirs.names(averaged=True):
        a = ours.average(n)
        assert a.shape == theirs.average(n).shape
        assert torch.equal(a, theirs.average(n)), n
    assert ours.average_view("body.0.weight").is_contiguous(memory_format=torch.channels_last)
    with ours.average_parameters():
        assert w.data_ptr() == ptr and torch.equal(w.detach(), theirs.average("body.0.weight"))
    with torch.no_grad():
        m.t.add_(2.0)
    et.update()
    torch.testing.assert_close(et.average("t"), m.t.detach() - 1.0)
    sd = ours.averaged_state_dict()
    fresh = CNN()
    fresh.load_state_dict(sd)
    assert torch.equal(fresh.body[0].weight, theirs.average("body.0.weight"))


# --------------------------------------------------------------------------
# The peers' checkpoints, both ways
# --------------------------------------------------------------------------

def test_peer_checkpoints_both_ways():
    model = make("transformer")
    dpeer = ref.DiffusersEMAModel(model.parameters(), decay=0.9, use_ema_warmup=True)
    epeer = ref.EmaPytorchEMA(model, beta=0.9, update_after_step=0, update_every=1)
    tpeer = ref.TimmModelEmaV3(model, decay=0.9)
    train("transformer", model, 12, lambda step: (dpeer.step(model.parameters()), epeer.update(),
                                                  tpeer.update(model)))
    names = [n for n, _ in model.named_parameters()]
    # diffusers -> ours -> diffusers
    d = EMA(model, 0.9, warmup="inverse_power", buffers="copy").register()
    d.load_state_dict(dpeer.state_dict())
    assert d.step == 12
    assert_params(d, zip(names, dpeer.shadow_params), "diffusers in")
    out = d.state_dict(format="diffusers")
    assert out["optimization_step"] == 12 and out["use_ema_warmup"] is True
    for a, b in zip(out["shadow_params"], dpeer.shadow_params):
        assert torch.equal(a, b)
    with pytest.raises(ema.MismatchError, match="another schedule"):
        EMA(model, 0.9, buffers="copy").register().load_state_dict(dpeer.state_dict())
    # ema-pytorch -> ours -> ema-pytorch
    e = EMA(model, 0.9, warmup="inverse_power", buffers="copy").register()
    e.load_state_dict(epeer.state_dict())
    assert e.step == 12
    assert_params(e, epeer.ema_model.named_parameters(), "ema-pytorch in")
    back = e.state_dict(format="ema_pytorch")
    assert set(back) == set(epeer.state_dict()) and int(back["step"]) == 12
    # timm -> ours -> timm (tied weights under both names)
    t = EMA(model, 0.9).register()
    t.load_state_dict(tpeer.module.state_dict())
    again = t.state_dict(format="timm")
    assert again.keys() == tpeer.module.state_dict().keys()
    for k, v in tpeer.module.state_dict().items():
        torch.testing.assert_close(again[k], v, **TOL, msg=k)
    fresh = make("transformer", seed=3)
    fresh.load_state_dict(again)                   # strict
    # the updates go on from the loaded state, same step count
    d.update()
    assert d.step == 13
    with pytest.raises(ema.MismatchError, match="unexpected 'ghost'"):
        t.load_state_dict(dict(tpeer.module.state_dict(), ghost=torch.zeros(1)))


def test_ignore_and_buffer_policies():
    model = make("cnn")
    e = EMA(model, 0.5, ignore=("head.*", "body.1.weight")).register()
    assert not any(n.startswith("head.") for n in e.names())
    assert "body.1.weight" not in e.names()
    assert ("head.weight", "ignored (ignore=...)") in e.skipped
    assert "body.1.running_mean" in e.names(averaged=True)
    c = EMA(model, 0.5, buffers="copy").register()
    assert "body.1.running_mean" in c.names(averaged=False)
    assert "body.1.num_batches_tracked" in e.names(averaged=False)
    assert math.isfinite(e.decay)


def test_buffers_keep_freezes_them_at_registration():
    model = make("cnn")
    bn = model.body[1]
    frozen = bn.running_mean.clone()
    try:
        e = EMA(model, 0.5, buffers="keep")
    except ema.UnsupportedError as ex:            # a library without EMA_POLICY_KEEP
        assert "EMA_POLICY_KEEP" in str(ex)
        return
    e.register()
    train("cnn", model, 3, lambda step: e.update())
    live = bn.running_mean.clone()
    assert not torch.equal(live, frozen)
    with e.average_parameters():
        assert torch.equal(bn.running_mean, frozen)   # the kept value is swapped in
    assert torch.equal(bn.running_mean, live)
    assert torch.equal(e.averaged_state_dict()["body.1.running_mean"], frozen)


# --------------------------------------------------------------------------
# Post-hoc EMA
# --------------------------------------------------------------------------

def test_posthoc_ema_synthesises_a_tracked_profile(tmp_path):
    """Snapshots of sigma_rel 0.05 and 0.28 every 5 steps; the synthesis of
    a profile that was also tracked directly (gamma 6.94 = sigma_rel 0.10)
    matches it, and the fit reports its residual and condition number."""
    from ema.torch import PostHocEMA
    model = make("cnn")
    ph = PostHocEMA(model, sigma_rels=(0.05, 0.28), checkpoint_every_num_steps=5, checkpoint_folder=tmp_path / "ph")
    direct = EMA(model, sigma_rel=0.10).register()
    train("cnn", model, 60, lambda step: (ph.update(), direct.update()))
    snaps = ph.snapshots()
    assert len(snaps) == 2 * 12 and {s[0] for s in snaps} == set(range(5, 61, 5))
    sd, info = ph.synthesize_state_dict(sigma_rel=0.10)
    assert info.residual < 0.05 and info.cond > 1 and info.n_used == 24
    assert set(sd) == set(model.state_dict())
    for n in direct.names(averaged=True):
        err = (sd[n] - direct.average(n)).abs().max() / (direct.average(n).abs().max() + 1e-6)
        assert err < 0.05, n
    assert torch.equal(sd["body.1.num_batches_tracked"], model.body[1].num_batches_tracked)
    m = ph.synthesize_ema_model(sigma_rel=0.10)
    assert not m.training and torch.equal(m.head.weight, sd["head.weight"])
    both = ph.synthesize_state_dict(sigma_rel=(0.05, 0.10))
    assert len(both) == 2
    # a tracked profile is reproduced (almost) exactly from its own snapshots
    sd05, info05 = ph.synthesize_state_dict(sigma_rel=0.05)
    torch.testing.assert_close(sd05["head.weight"], ph.ema.average("head.weight", "sigma_rel_0.05"),
                               rtol=1e-3, atol=1e-4)
    # half-precision snapshot files
    ph16 = PostHocEMA(make("cnn"), checkpoint_every_num_steps=1, checkpoint_folder=tmp_path / "h",
                      checkpoint_dtype=torch.float16)
    ph16.update()
    with ema.open_file(ph16.snapshots()[0][3]) as f:
        assert f.info("head.weight").dtype == "F16"
    with pytest.raises(ValueError, match="at least two"):
        PostHocEMA(make("cnn"), sigma_rels=(0.1,), checkpoint_folder=tmp_path / "x")


def test_bank_members_in_checkpoints_and_copy_to(tmp_path):
    model = make("cnn")
    e = EMA(model, (0.5, 0.9), buffers="copy").register()
    train("cnn", model, 4, lambda step: e.update())
    p = tmp_path / "bank.safetensors"
    e.save(p)
    keys = set(ema.open_file(p).keys())
    assert {"head.weight/ema_0.5", "head.weight/ema_0.9"} <= keys
    fresh = make("cnn", seed=4)
    f = EMA(fresh, (0.5, 0.9), buffers="copy").register()
    f.load_averages_into_model(p, member="ema_0.9")
    assert torch.equal(fresh.head.weight, e.average("head.weight", 1))
    f.load_averages_into_model(p)                          # member 0 by default
    assert torch.equal(fresh.head.weight, e.average("head.weight", 0))
    other = make("cnn", seed=5)
    e.copy_to(other, member=1)
    assert torch.equal(other.head.weight, e.average("head.weight", 1))
    e.store()
    e.copy_to(member=1)
    assert torch.equal(model.head.weight, e.average("head.weight", 1))
    e.restore()
    with pytest.raises(ValueError, match="num_updates"):
        EMA(model, 0.9, warmup="inverse_power", num_updates=3)


def test_module_is_made_once_and_refreshed_after_updates():
    model = make("cnn")
    e = EMA(model, 0.5).register()
    m1 = e.module
    assert m1 is e.ema_model and not m1.training and not any(p.requires_grad for p in m1.parameters())
    w1 = m1.head.weight.clone()
    train("cnn", model, 2, lambda step: e.update())
    assert e.module is m1 and not torch.equal(m1.head.weight, w1)
    assert torch.equal(m1.head.weight, e.average("head.weight"))
    assert torch.equal(m1.body[1].running_mean, e.average("body.1.running_mean"))
    assert m1.head.weight.data_ptr() != model.head.weight.data_ptr()


def test_diffusers_state_into_an_ema_that_also_averages_buffers():
    model = make("cnn")
    peer = ref.DiffusersEMAModel(model.parameters(), decay=0.9, use_ema_warmup=True)
    e = EMA(model, 0.9, warmup="inverse_power").register()         # buffers averaged too
    train("cnn", model, 5, lambda step: (peer.step(model.parameters()), e.update()))
    buffers = e.average("body.1.running_mean")
    fresh = EMA(model, 0.9, warmup="inverse_power").register()
    fresh.load_state_dict(peer.state_dict())
    assert_params(fresh, zip([n for n, _ in model.named_parameters()], peer.shadow_params), "diffusers in")
    assert not torch.equal(fresh.average("body.1.running_mean"), buffers)   # kept its own (a copy at register)
    assert torch.equal(fresh.average("body.1.running_mean"), model.body[1].running_mean)
    with pytest.raises(ema.MismatchError, match="zero_debias"):
        EMA(model, 0.9, warmup="inverse_power", zero_debias=True).register().load_state_dict(peer.state_dict())
