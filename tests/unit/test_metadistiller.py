"""MetaDistiller and the multi-exit wrapper: shapes and splits of MultiExit, the label generator of
Eq. (5), the losses of Eqs. (3)-(4), the look-ahead meta-gradient of Eqs. (6)-(8) against finite
differences, the DSN / SD / MD switch, the detach map, and the bad inputs the issue lists."""
import pytest
import torch
import torch.nn.functional as F

from kdlab import meta
from kdlab.data.base import DataSplits
from kdlab.errors import ParameterError
from kdlab.losses import kd_loss
from kdlab.methods.metadistiller import (LabelGenerator, exit_losses, generator_step, lookahead_objective,
                                         network_losses, soft_targets_for, train_metadistiller)
from kdlab.models import CNN1D, MLP, SmallCNN, create
from kdlab.models.multi_exit import MultiExit, ensemble, exit_accuracies


# ----------------------------------------------------------------------------------------- helpers

def tiny(dtype=torch.float64, head="bottleneck", seed=0, classes=3):
    """A 3-stage SmallCNN of width 2 with exits after stages 1 and 2, and its generator (width 2)."""
    torch.manual_seed(seed)
    model = MultiExit(SmallCNN(num_classes=classes, width=2), head=head).to(dtype)
    generator = LabelGenerator.for_model(model, width=2)
    for p in generator.parameters():  # the zero-initialised classifiers would hide a missing gradient
        torch.nn.init.normal_(p, 0.0, 0.5)
    return model, generator


def batch(n, seed, dtype=torch.float64, classes=3, size=8):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, size, size, generator=g, dtype=dtype), torch.arange(n) % classes


def tiny_digits(n_train=24, n_test=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    return DataSplits("toy", torch.rand(n_train, 1, 8, 8, generator=g), torch.arange(n_train) % 3,
                      torch.rand(n_test, 1, 8, 8, generator=g), torch.arange(n_test) % 3, 3, (1, 8, 8))


# ----------------------------------------------------------------------------------------- MultiExit

def test_multi_exit_splits_the_small_cnn_into_three_stages():
    model, _ = tiny(torch.float32)
    x, _ = batch(4, 0, torch.float32)
    outputs, maps = model(x, all_exits=True, return_features=True)
    assert model.num_exits == 3 and model.split_after == (1, 2)
    assert [tuple(m.shape[1:]) for m in maps] == [(2, 8, 8), (4, 4, 4), (8, 2, 2)]
    assert [tuple(o.shape) for o in outputs] == [(4, 3)] * 3
    assert torch.equal(model(x), model.backbone(x)), "model(x) is the deployed backbone"
    assert torch.allclose(outputs[-1], model.backbone(x)), "the last exit is the backbone's classifier"


@pytest.mark.parametrize("name,num_exits,split_after,sizes", [
    ("resnet8", 3, None, [32, 16, 8]),
    ("resnet8", 2, (2,), [16, 8]),
    ("vgg8", 4, None, [16, 8, 4, 4]),      # two stages at 4x4: the top-down path keeps the size
])
def test_multi_exit_splits_the_cifar_zoo(name, num_exits, split_after, sizes):
    torch.manual_seed(0)
    model = MultiExit(create(name, num_classes=10), num_exits, split_after=split_after)
    x = torch.randn(2, 3, 32, 32)
    outputs, maps = model(x, all_exits=True, return_features=True)
    assert [m.shape[-1] for m in maps] == sizes
    assert len(outputs) == num_exits and all(o.shape == (2, 10) for o in outputs)
    targets = LabelGenerator.for_model(model)(maps)
    assert len(targets) == num_exits - 1 and all(t.shape == (2, 10) for t in targets)


def test_odd_feature_map_sizes_work_in_the_top_down_path():
    torch.manual_seed(0)
    backbone = SmallCNN(num_classes=3, width=2)
    backbone.input_shape = (1, 7, 7)                    # stages: 7x7 -> 4x4 -> 2x2
    model = MultiExit(backbone)
    outputs, maps = model(torch.randn(2, 1, 7, 7), all_exits=True, return_features=True)
    assert [m.shape[-1] for m in maps] == [7, 4, 2]
    generator = LabelGenerator.for_model(model, width=3)
    assert [tuple(f.shape[1:]) for f in generator.fuse(maps)] == [(3, 7, 7), (3, 4, 4), (3, 2, 2)]
    assert all(t.shape == (2, 3) for t in generator(maps))


def test_exit_accuracies_score_every_exit_and_the_probability_ensemble():
    model, _ = tiny(torch.float32)
    x, y = batch(10, 1, torch.float32)
    accs = exit_accuracies(model, x, y)
    assert list(accs) == ["exit1", "exit2", "final", "ensemble"]
    model.eval()
    with torch.no_grad():
        outputs = model(x, all_exits=True)
    expected = 100.0 * float((ensemble(outputs).argmax(1) == y).float().mean())
    assert accs["ensemble"] == pytest.approx(expected)
    assert accs["exit1"] == pytest.approx(100.0 * float((outputs[0].argmax(1) == y).float().mean()))


# ----------------------------------------------------------------------------------------- bad inputs

@pytest.mark.parametrize("num_exits", [1, 0, -2, 2.5, True])
def test_fewer_than_two_exits_are_refused(num_exits):
    with pytest.raises(ParameterError, match=r"num_exits=.* must be an integer in \[2, 3\]"):
        MultiExit(SmallCNN(), num_exits)


def test_more_exits_than_stages_are_refused():
    with pytest.raises(ParameterError, match="num_exits=4 .* SmallCNN has 3 stages"):
        MultiExit(SmallCNN(), 4)


@pytest.mark.parametrize("backbone", [MLP(64, hidden=(8,)), CNN1D()], ids=["mlp", "cnn1d"])
def test_a_backbone_without_2d_stages_cannot_be_split(backbone):
    with pytest.raises(ParameterError, match="backbone=.* must be a StagedNet"):
        MultiExit(backbone, 2)


@pytest.mark.parametrize("split_after", [(0,), (3,), (2, 1), (1,), [1, 1], "1,2"])
def test_split_points_outside_the_backbone_are_refused(split_after):
    with pytest.raises(ParameterError, match=r"split_after=.* increasing stage numbers in \[1, 2\]"):
        MultiExit(SmallCNN(), 3, split_after=split_after)


@pytest.mark.parametrize("meta_every", [0, -1, 2.0, None])
def test_meta_every_below_one_is_refused(meta_every):
    model, _ = tiny(torch.float32)
    with pytest.raises(ParameterError, match=r"meta_every=.* must be an integer >= 1"):
        train_metadistiller(model, tiny_digits(), epochs=1, meta_every=meta_every)


def test_unknown_mode_and_a_plain_model_are_refused():
    model, _ = tiny(torch.float32)
    with pytest.raises(ParameterError, match="mode='kd' .* one of 'dsn'"):
        train_metadistiller(model, tiny_digits(), epochs=1, mode="kd")
    with pytest.raises(ParameterError, match="model='SmallCNN'"):
        train_metadistiller(SmallCNN(num_classes=3), tiny_digits(), epochs=1)


# ----------------------------------------------------------------------------------------- Eq. (5)

def test_generated_targets_are_distributions_with_one_per_shallow_exit():
    model, generator = tiny()
    x, _ = batch(5, 2)
    outputs, maps = model(x, all_exits=True, return_features=True)
    fused = generator.fuse(maps)
    assert [tuple(f.shape) for f in fused] == [(5, 2, 8, 8), (5, 2, 4, 4), (5, 2, 2, 2)]
    u = generator(maps)
    assert len(u) == model.num_exits - 1
    for u_k, s_k in zip(u, outputs[:-1]):
        assert u_k.shape == s_k.shape
        for temperature in (1.0, 4.0):
            t_k = torch.softmax(u_k / temperature, dim=-1)
            assert (t_k >= 0).all() and torch.allclose(t_k.sum(-1), torch.ones(5, dtype=t_k.dtype))


def test_fusion_is_equation_5():
    model, generator = tiny()
    _, maps = model(batch(3, 3)[0], all_exits=True, return_features=True)
    fused = generator.fuse(maps)
    assert torch.allclose(fused[2], generator.lateral[2](maps[2]))          # last stage: conv1x1 only
    up = F.interpolate(fused[2], size=(4, 4), mode="bilinear", align_corners=False)
    assert torch.allclose(fused[1], generator.smooth[1](up + generator.lateral[1](maps[1])))


def test_an_untrained_generator_gives_uniform_targets():
    torch.manual_seed(0)
    model = MultiExit(SmallCNN(num_classes=4, width=2))
    _, maps = model(torch.randn(3, 1, 8, 8), all_exits=True, return_features=True)
    for u in LabelGenerator.for_model(model)(maps):
        assert torch.allclose(torch.softmax(u, -1), torch.full((3, 4), 0.25))


# ----------------------------------------------------------------------------------------- Eqs. (3)-(4), modes

def test_dsn_sd_md_differ_exactly_in_the_soft_targets():
    model, generator = tiny()
    x, y = batch(6, 4)
    alpha, temperature = 0.3, 2.0
    losses = {mode: network_losses(model, generator, x, y, mode=mode, alpha=alpha, temperature=temperature)
              for mode in ("dsn", "sd", "md")}
    with torch.no_grad():
        outputs, maps = model(x, all_exits=True, return_features=True)
        generated = generator(maps)
    ce = [F.cross_entropy(o, y) for o in outputs]
    for mode in losses:  # the hard-label terms are the same in every mode
        assert torch.allclose(losses[mode]["ce_final"], ce[-1])
        assert all(torch.allclose(losses[mode][f"ce_exit{k}"], ce[k - 1]) for k in (1, 2))
    assert "kd_exit1" not in losses["dsn"]
    assert torch.allclose(losses["dsn"]["loss"], sum(ce))
    for mode, targets in (("sd", [outputs[-1]] * 2), ("md", generated)):
        kd = [kd_loss(outputs[k], targets[k], temperature) for k in (0, 1)]
        assert all(torch.allclose(losses[mode][f"kd_exit{k + 1}"], kd[k]) for k in (0, 1))
        expected = ce[-1] + sum(alpha * ce[k] + (1 - alpha) * kd[k] for k in (0, 1))
        assert torch.allclose(losses[mode]["loss"], expected)
    assert not torch.allclose(losses["sd"]["loss"], losses["md"]["loss"])


def test_network_step_detaches_every_soft_target():
    model, generator = tiny()
    x, y = batch(6, 5)
    network_losses(model, generator, x, y, mode="md")["loss"].backward()
    assert all(p.grad is None for p in generator.parameters()), "the generator learns only from Eq. (8)"
    # SD: the final output is a label for the exits, so the KD terms do not reach the final classifier
    model.zero_grad()
    network_losses(model, None, x, y, mode="sd", alpha=0.5)["loss"].backward()
    with_kd = model.backbone.classifier.weight.grad.clone()
    model.zero_grad()
    outputs = model(x, all_exits=True)
    F.cross_entropy(outputs[-1], y).backward()
    assert torch.allclose(with_kd, model.backbone.classifier.weight.grad)


def test_targets_per_mode():
    model, generator = tiny()
    outputs, maps = model(batch(4, 6)[0], all_exits=True, return_features=True)
    assert soft_targets_for("dsn", outputs, maps) is None
    sd = soft_targets_for("sd", outputs, maps)
    assert len(sd) == 2 and all(torch.equal(t, outputs[-1]) and not t.requires_grad for t in sd)
    md = soft_targets_for("md", outputs, maps, generator)
    assert len(md) == 2 and not any(t.requires_grad for t in md)
    with pytest.raises(ParameterError, match="generator=None"):
        soft_targets_for("md", outputs, maps, None)


def test_exit_losses_follow_equation_4_by_hand():
    g = torch.Generator().manual_seed(7)
    s = [torch.randn(5, 4, generator=g, dtype=torch.float64) for _ in range(3)]
    u = [torch.randn(5, 4, generator=g, dtype=torch.float64) for _ in range(2)]
    y = torch.tensor([0, 1, 2, 3, 0])
    tau, alpha = 3.0, 0.5
    by_hand = F.cross_entropy(s[2], y)
    for s_k, u_k in zip(s, u):
        p_t, log_p_s = torch.softmax(u_k / tau, -1), torch.log_softmax(s_k / tau, -1)
        kl = (p_t * (p_t.log() - log_p_s)).sum(-1).mean()
        by_hand = by_hand + alpha * F.cross_entropy(s_k, y) + (1 - alpha) * tau**2 * kl
    assert torch.allclose(exit_losses(s, y, u, alpha=alpha, temperature=tau)["loss"], by_hand)


# ----------------------------------------------------------------------------------------- Eqs. (6)-(8)

def test_generator_meta_gradient_is_nonzero_and_matches_finite_differences():
    model, generator = tiny()
    train_batch, test_batch = batch(6, 8), batch(5, 9)

    def objective():
        return lookahead_objective(model, generator, train_batch, test_batch, lr=0.5, alpha=0.5,
                                   temperature=2.0)[0]

    params = list(generator.parameters())
    grads = torch.autograd.grad(objective(), params)
    assert all(g is not None for g in grads)
    assert all(float(g.abs().sum()) > 0 for g in grads), "every generator tensor gets a meta-gradient"
    eps = 1e-6
    g = torch.Generator().manual_seed(10)
    for _ in range(3):  # central differences along random directions: d/de L(theta_g + e v) = grad . v
        direction = [torch.randn(p.shape, generator=g, dtype=p.dtype) for p in params]
        for p, v in zip(params, direction):
            p.data.add_(eps * v)
        up = objective().item()
        for p, v in zip(params, direction):
            p.data.sub_(2 * eps * v)
        down = objective().item()
        for p, v in zip(params, direction):
            p.data.add_(eps * v)
        numeric = (up - down) / (2 * eps)
        analytic = sum(float((gr * v).sum()) for gr, v in zip(grads, direction))
        assert analytic == pytest.approx(numeric, rel=1e-4, abs=1e-9)
    # and entry by entry for the first exit's classifier
    weight = generator.heads[0].classifier.weight
    analytic = next(gr for p, gr in zip(params, grads) if p is weight)
    for i in range(weight.numel()):
        flat = weight.data.view(-1)
        old = flat[i].item()
        flat[i] = old + eps
        up = objective().item()
        flat[i] = old - eps
        down = objective().item()
        flat[i] = old
        assert analytic.view(-1)[i].item() == pytest.approx((up - down) / (2 * eps), rel=1e-4, abs=1e-9)


def test_a_look_ahead_of_zero_gives_the_generator_exactly_zero_gradient():
    model, generator = tiny()
    meta_loss, _ = lookahead_objective(model, generator, batch(6, 8), batch(5, 9), lr=0.0)
    grads = torch.autograd.grad(meta_loss, list(generator.parameters()), allow_unused=True)
    assert all(g is None or float(g.abs().max()) == 0.0 for g in grads)


def test_meta_exits_final_scores_only_the_final_output():
    model, generator = tiny()
    test_batch = batch(5, 9)
    meta_final, _ = lookahead_objective(model, generator, batch(6, 8), test_batch, lr=0.0, meta_exits="final")
    assert torch.allclose(meta_final, F.cross_entropy(meta.forward(model, meta.params_of(model), test_batch[0]),
                                                      test_batch[1]))
    with pytest.raises(ParameterError, match="meta_exits='some'"):
        lookahead_objective(model, generator, batch(6, 8), test_batch, lr=0.1, meta_exits="some")


def test_generator_step_changes_the_generator_and_nothing_of_the_network():
    model, generator = tiny()
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    gen_before = [p.clone() for p in generator.parameters()]
    terms = generator_step(model, generator, torch.optim.Adam(generator.parameters(), lr=1e-2),
                           batch(6, 8), batch(5, 9), lr=0.5)
    assert set(terms) == {"meta_loss", "lookahead_loss", "meta_grad_norm"} and float(terms["meta_grad_norm"]) > 0
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items()), "parameters and BN buffers"
    assert all(p.grad is None for p in model.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(gen_before, generator.parameters()))


# ----------------------------------------------------------------------------------------- Algorithm 1

def test_training_records_meta_epochs_every_m_epochs_and_every_exit():
    torch.manual_seed(0)
    model = MultiExit(SmallCNN(num_classes=3, width=2))
    _, generator, history = train_metadistiller(model, tiny_digits(), epochs=3, lr=0.05, batch_size=8,
                                                meta_every=2, mode="md", seed=0, progress=False)
    assert isinstance(generator, LabelGenerator)
    assert [r["meta_epoch"] for r in history.records] == [True, False, True]
    assert all("meta_loss" in r for r in history.records if r["meta_epoch"])
    assert not any("meta_loss" in r for r in history.records if not r["meta_epoch"])
    last = history.last
    assert {"test_acc", "test_acc_exit1", "test_acc_exit2", "test_acc_ensemble", "kd_exit1",
            "target_entropy2"} <= set(last)


@pytest.mark.parametrize("mode", ["md", "sd"])
def test_with_alpha_one_every_mode_trains_exactly_the_dsn_network(mode):
    """alpha = 1 removes the soft term of Eq. (4): MD (generator steps included) and SD then train the very
    same network as DSN, bit for bit: the look-ahead never writes the network."""
    data, states = tiny_digits(), {}
    for m in ("dsn", mode):
        torch.manual_seed(3)
        model = MultiExit(SmallCNN(num_classes=3, width=2))
        _, generator, _ = train_metadistiller(model, data, epochs=2, lr=0.1, batch_size=8, alpha=1.0,
                                              meta_every=1, mode=m, seed=3, progress=False)
        states[m] = model.state_dict()
    assert all(torch.equal(states["dsn"][k], states[mode][k]) for k in states["dsn"])
    # and with alpha < 1 the soft targets do change the network
    torch.manual_seed(3)
    model = MultiExit(SmallCNN(num_classes=3, width=2))
    train_metadistiller(model, data, epochs=2, lr=0.1, batch_size=8, alpha=0.5, meta_every=1, mode=mode,
                        seed=3, progress=False)
    assert not all(torch.equal(states["dsn"][k], model.state_dict()[k]) for k in states["dsn"])
