"""MetaDistiller and the multi-exit wrapper: shapes and splits of MultiExit, the label generator of Eq. (5),
the losses of Eqs. (3)-(4), the DSN / SD / MD switch and the detach map, and the method's steps against an
ORACLE written from the paper in plain torch (Eqs. 3-8 by hand: no `kdlab.meta`, no `lookahead_objective`,
no `exit_losses`, no `LabelGenerator.fuse`), plus finite differences of that oracle (kdlab.gradcheck).

The `check_*` functions are the checks the planted bugs of test_metadistiller_mutants.py must fail.
ALPHA weights the distillation term: L_k = (1 - alpha) CE + alpha tau^2 KL (the paper's alpha is 1 - ALPHA).
"""
import copy

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from kdlab.data.base import DataSplits
from kdlab.errors import ParameterError
from kdlab.gradcheck import finite_differences, relative_error
from kdlab.methods import metadistiller as md
from kdlab.methods import registry
from kdlab.methods.base import Batch, Recipe, Run
from kdlab.models import CNN1D, MLP, SmallCNN, create
from kdlab.models.label_generator import LabelGenerator
from kdlab.models.multi_exit import MultiExit, ensemble, exit_accuracies
from kdlab.train import History, fit

ALPHA, TAU = 0.3, 2.0          # away from the paper's 0.5 and 1, so a swapped weight or a missing tau shows
BASE_LR, LR, META_LR = 0.5, 0.3, 0.01   # the recipe's lr, the scheduled lr of the step (zeta), Adam's


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


def tiny_digits(n_train=24, n_test=12, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return DataSplits("toy", torch.rand(n_train, 1, 8, 8, generator=g, dtype=dtype), torch.arange(n_train) % 3,
                      torch.rand(n_test, 1, 8, 8, generator=g, dtype=dtype), torch.arange(n_test) % 3, 3, (1, 8, 8))


def started(method, data, *, seed=5, epoch, lr=LR, batch_size=4):
    """`method` configured and prepared as `fit` does, at the start of epoch `epoch` with learning rate `lr`."""
    run = Run(seed=seed, epochs=10, batch_size=batch_size, recipe=Recipe(lr=BASE_LR),
              generator=torch.Generator().manual_seed(seed), history=History())
    method.configure(run.recipe, run)
    method.prepare(data, run)
    method.train()
    method.optimizer.param_groups[0]["lr"] = run.lr = lr   # as the schedule would have set it
    run.epoch = epoch
    method.on_epoch_start(run)
    return run


# ----------------------------------------------------------------------------------------- the oracle

def ce(logits, y):
    return -torch.log_softmax(logits, -1)[torch.arange(len(y)), y].mean()


def tau2_kl(student, target, tau):
    """tau^2 KL(softmax(target / tau) || softmax(student / tau)), batch mean."""
    log_t, log_s = torch.log_softmax(target / tau, -1), torch.log_softmax(student / tau, -1)
    return tau**2 * (log_t.exp() * (log_t - log_s)).sum(-1).mean()


def eq3(outputs, y, targets, alpha, tau):
    """Eqs. (3)-(4), ALPHA on the KL term; targets None: hard labels only (DSN)."""
    loss = ce(outputs[-1], y)
    for k, s_k in enumerate(outputs[:-1]):
        if targets is None:
            loss = loss + ce(s_k, y)
        else:
            loss = loss + (1 - alpha) * ce(s_k, y) + alpha * tau2_kl(s_k, targets[k], tau)
    return loss


def eq5(gen, maps):
    """Eq. (5) with the generator's weights, by hand: conv1x1 on F_K, then conv3x3(bilinear up + conv1x1(F_k))."""
    maps = [m.detach() for m in maps]
    fused = [None] * len(maps)
    fused[-1] = F.conv2d(maps[-1], gen.lateral[-1].weight, gen.lateral[-1].bias)
    for k in range(len(maps) - 2, -1, -1):
        up = F.interpolate(fused[k + 1], size=maps[k].shape[-2:], mode="bilinear", align_corners=False)
        lateral = F.conv2d(maps[k], gen.lateral[k].weight, gen.lateral[k].bias)
        fused[k] = F.conv2d(up + lateral, gen.smooth[k].weight, gen.smooth[k].bias, padding=1)
    return [head(f) for head, f in zip(gen.heads, fused[:-1])]


def oracle_network_step(model, generator, x, y, *, mode, alpha=ALPHA, tau=TAU, lr=LR):
    """Algorithm 1, lines 4-7, on copies: SGD (momentum 0.9, weight decay 5e-4) on Eq. (3) with constant targets."""
    net = copy.deepcopy(model).train()
    outputs, maps = net(x, all_exits=True, return_features=True)
    if mode == "dsn":
        targets = None
    elif mode == "sd":
        targets = [outputs[-1].detach()] * (len(outputs) - 1)
    else:
        with torch.no_grad():
            targets = eq5(copy.deepcopy(generator).train(), maps)
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    eq3(outputs, y, targets, alpha, tau).backward()
    opt.step()
    return net


def oracle_meta(model, generator, train, test, *, alpha=ALPHA, tau=TAU, lr=LR, exits="all", create_graph=True):
    """Eqs. (6)-(8) by hand on copies: (L_test(theta_s^+), d L_test / d theta_g) with
    theta_s^+ = theta_s - lr * grad_theta_s Eq.(3)(theta_s, T(theta_g)); batch statistics throughout."""
    net, gen = copy.deepcopy(model).train(), copy.deepcopy(generator).train()
    names, theta = zip(*net.named_parameters())
    (x, y), (x_test, y_test) = train, test
    outputs, maps = functional_call(net, dict(zip(names, theta)), (x,), {"all_exits": True, "return_features": True})
    inner = eq3(outputs, y, eq5(gen, maps), alpha, tau)
    grads = torch.autograd.grad(inner, theta, create_graph=create_graph)
    fast = {name: p - lr * g for name, p, g in zip(names, theta, grads)}                               # Eq. (7)
    test_outputs = functional_call(net, fast, (x_test,), {"all_exits": True})
    meta_loss = sum(ce(o, y_test) for o in (test_outputs if exits == "all" else test_outputs[-1:]))      # Eq. (8)
    return meta_loss, torch.autograd.grad(meta_loss, list(gen.parameters())) if create_graph else None


def test_the_oracle_matches_finite_differences():
    model, generator = tiny()
    train, test = batch(6, 8), batch(5, 9)
    _, grads = oracle_meta(model, generator, train, test)
    weight = generator.heads[0].classifier.weight
    numeric = finite_differences(lambda: oracle_meta(model, generator, train, test, create_graph=False)[0].detach(),
                                 [weight])
    analytic = [g for p, g in zip(generator.parameters(), grads) if p is weight]
    assert relative_error(analytic, numeric) < 1e-6


# ----------------------------------------------------------------------------------------- the checks

def check_network_step(mode):
    """One network step outside a meta epoch equals the oracle's, and leaves the generator untouched."""
    model, generator = tiny()
    method = md.MetaDistiller(model, mode=mode, alpha=ALPHA, temperature=TAU, generator=generator, meta_every=5)
    run = started(method, tiny_digits(dtype=torch.float64), epoch=1)
    x, y = batch(6, 4)
    before, gen_before = [p.detach().clone() for p in model.parameters()], copy.deepcopy(generator)
    expected = [a - b for a, b in zip(oracle_network_step(model, generator, x, y, mode=mode).parameters(), before)]
    method.step(Batch(x, y, torch.arange(6)), run)
    assert relative_error([p - b for p, b in zip(model.parameters(), before)], expected) < 1e-9, \
        f"{mode}: the network step is not Eqs. (3)-(4) with constant soft targets"
    if mode == "md":
        assert all(p.grad is None for p in generator.parameters()), "the network step wrote a generator gradient"
        assert all(torch.equal(a, b) for a, b in zip(generator.parameters(), gen_before.parameters()))


def check_meta_step(meta_exits="all"):
    """One step of a meta epoch: the network step, then the generator's meta-gradient equals the oracle's
    at the network's new weights, on a D_train batch and a D_test batch, and Adam took it."""
    data = tiny_digits(n_train=12, dtype=torch.float64)
    model, generator = tiny()
    method = md.MetaDistiller(model, alpha=ALPHA, temperature=TAU, meta_every=2, meta_lr=META_LR,
                              generator=generator, meta_exits=meta_exits)
    run = started(method, data, epoch=2)
    assert method.meta_epoch
    halves = method.halves   # Algorithm 1, line 10: two disjoint halves that cover the training set
    assert len(halves[0]) == len(halves[1]) == 6 and torch.equal(torch.cat(halves).sort().values, torch.arange(12))
    rng = torch.Generator().manual_seed(5 + 104_729)   # the documented protocol: one randperm, then two draws
    half_train, half_test = torch.randperm(12, generator=rng).split(6)
    rows = [half[torch.randint(6, (4,), generator=rng)] for half in (half_train, half_test)]
    x, y = batch(4, 3)
    net_after = oracle_network_step(model, generator, x, y, mode="md")
    gen_before = copy.deepcopy(generator)
    _, expected = oracle_meta(net_after, gen_before, *[(data.x_train[r], data.y_train[r]) for r in rows],
                              exits=meta_exits)
    method.step(Batch(x, y, torch.arange(4)), run)
    grads = [p.grad for p in generator.parameters()]
    assert all(g is not None for g in grads), "no meta-gradient reached the generator: its step did not run"
    assert relative_error(grads, expected) < 1e-9, "the generator's meta-gradient is not Eqs. (6)-(8)"
    adam = torch.optim.Adam(gen_before.parameters(), lr=META_LR)
    for p, g in zip(gen_before.parameters(), expected):
        p.grad = g
    adam.step()
    assert relative_error(list(generator.parameters()), list(gen_before.parameters())) < 1e-12


def check_meta_gradient_matches_finite_differences():
    """The kit's look-ahead meta-gradient against central differences of the oracle's meta loss (float64)."""
    model, generator = tiny()
    train, test = batch(6, 8), batch(5, 9)
    meta_loss, _ = md.lookahead_objective(model, generator, train, test, lr=LR, alpha=ALPHA, temperature=TAU)
    grads = dict(zip(generator.parameters(), md.meta_gradient(meta_loss, generator)))
    chosen = [generator.lateral[0].weight, generator.smooth[0].weight, generator.heads[0].classifier.weight,
              generator.heads[1].body[0].weight]
    numeric = finite_differences(lambda: oracle_meta(model, generator, train, test, create_graph=False)[0].detach(),
                                 chosen)
    assert all(float(n.abs().max()) > 0 for n in numeric)
    assert relative_error([grads[p] for p in chosen], numeric) < 1e-6, "meta-gradient != finite differences"


def check_generator_keeps_its_learning_rate():
    """Only the network follows the schedule: the generator's Adam keeps meta_lr (as before the rebuild)."""
    torch.manual_seed(0)
    method = md.MetaDistiller(MultiExit(SmallCNN(num_classes=3, width=2)), meta_every=1, meta_lr=0.02)
    fit(method, tiny_digits(), epochs=2, lr=0.05, batch_size=8, seed=0, progress=False)
    assert method.generator_optimizer.param_groups[0]["lr"] == 0.02, "the generator's Adam lr was scheduled"


@pytest.mark.parametrize("mode", ["dsn", "sd", "md"])
def test_network_step_matches_the_oracle(mode):
    check_network_step(mode)


@pytest.mark.parametrize("meta_exits", ["all", "final"])
def test_meta_step_matches_the_oracle(meta_exits):
    check_meta_step(meta_exits)


def test_meta_gradient_matches_finite_differences():
    check_meta_gradient_matches_finite_differences()


def test_generator_keeps_its_learning_rate():
    check_generator_keeps_its_learning_rate()


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
    outputs, maps = model(torch.randn(2, 3, 32, 32), all_exits=True, return_features=True)
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
    assert accs["ensemble"] == pytest.approx(100.0 * float((ensemble(outputs).argmax(1) == y).float().mean()))
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


@pytest.mark.parametrize("options,message", [
    (dict(meta_every=0), r"meta_every=0 .* must be an integer >= 1"),
    (dict(meta_every=2.0), r"meta_every=2.0 .* must be an integer >= 1"),
    (dict(mode="kd"), r"mode='kd' .* one of 'dsn'"),
    (dict(meta_exits="some"), r"meta_exits='some' .* 'all'"),
    (dict(alpha=1.5), r"ALPHA=1.5 .* in \[0, 1\]"),
    (dict(generator_width=0), r"generator_width=0 .* integer >= 1"),
    (dict(freeze_generator="yes"), r"freeze_generator='yes' .* True or False"),
])
def test_bad_options_are_refused(options, message):
    model, _ = tiny(torch.float32)
    with pytest.raises(ParameterError, match=message):
        fit(md.MetaDistiller(model, **options), tiny_digits(), epochs=1, progress=False)


def test_a_plain_model_is_refused():
    with pytest.raises(ParameterError, match="model='SmallCNN'"):
        md.MetaDistiller(SmallCNN(num_classes=3))


# ----------------------------------------------------------------------------------------- Eq. (5)

def test_generated_targets_are_distributions_with_one_per_shallow_exit():
    model, generator = tiny()
    outputs, maps = model(batch(5, 2)[0], all_exits=True, return_features=True)
    assert [tuple(f.shape) for f in generator.fuse(maps)] == [(5, 2, 8, 8), (5, 2, 4, 4), (5, 2, 2, 2)]
    u = generator(maps)
    assert len(u) == model.num_exits - 1
    for u_k, s_k in zip(u, outputs[:-1]):
        assert u_k.shape == s_k.shape
        t_k = torch.softmax(u_k / 4.0, dim=-1)
        assert (t_k >= 0).all() and torch.allclose(t_k.sum(-1), torch.ones(5, dtype=t_k.dtype))


def test_generator_is_equation_5_by_hand():
    model, generator = tiny()
    generator.train()
    _, maps = model(batch(3, 3)[0], all_exits=True, return_features=True)
    for mine, by_hand in zip(generator(maps), eq5(generator, maps)):
        assert torch.allclose(mine, by_hand, rtol=1e-12, atol=1e-12)


def test_an_untrained_generator_gives_uniform_targets():
    torch.manual_seed(0)
    model = MultiExit(SmallCNN(num_classes=4, width=2))
    _, maps = model(torch.randn(3, 1, 8, 8), all_exits=True, return_features=True)
    for u in LabelGenerator.for_model(model)(maps):
        assert torch.allclose(torch.softmax(u, -1), torch.full((3, 4), 0.25))


# ----------------------------------------------------------------------------------------- Eqs. (3)-(4), modes

def test_exit_losses_follow_equation_4_with_alpha_on_the_kl_term():
    g = torch.Generator().manual_seed(7)
    s = [torch.randn(5, 4, generator=g, dtype=torch.float64) for _ in range(3)]
    u = [torch.randn(5, 4, generator=g, dtype=torch.float64) for _ in range(2)]
    y = torch.tensor([0, 1, 2, 3, 0])
    for alpha in (0.0, 0.3, 1.0):
        assert torch.allclose(md.exit_losses(s, y, u, alpha=alpha, temperature=3.0)["loss"], eq3(s, y, u, alpha, 3.0))
    assert torch.allclose(md.exit_losses(s, y, None)["loss"], eq3(s, y, None, 0.5, 1.0))


def test_dsn_sd_md_differ_exactly_in_the_soft_targets():
    model, generator = tiny()
    x, y = batch(6, 4)
    losses = {mode: md.network_losses(model, generator, x, y, mode=mode, alpha=ALPHA, temperature=TAU)
              for mode in ("dsn", "sd", "md")}
    with torch.no_grad():
        outputs, maps = model(x, all_exits=True, return_features=True)
        generated = generator(maps)
    for mode in losses:  # the hard-label terms are the same in every mode
        assert all(torch.allclose(losses[mode][f"ce_exit{k}"], ce(outputs[k - 1], y)) for k in (1, 2))
    assert "kd_exit1" not in losses["dsn"] and torch.allclose(losses["dsn"]["loss"], eq3(outputs, y, None, 0, 1))
    assert torch.allclose(losses["sd"]["loss"], eq3(outputs, y, [outputs[-1]] * 2, ALPHA, TAU))
    assert torch.allclose(losses["md"]["loss"], eq3(outputs, y, generated, ALPHA, TAU))
    assert not torch.allclose(losses["sd"]["loss"], losses["md"]["loss"])


def test_targets_per_mode_are_detached():
    model, generator = tiny()
    outputs, maps = model(batch(4, 6)[0], all_exits=True, return_features=True)
    assert md.soft_targets_for("dsn", outputs, maps) is None
    sd = md.soft_targets_for("sd", outputs, maps)
    assert len(sd) == 2 and all(torch.equal(t, outputs[-1]) and not t.requires_grad for t in sd)
    generated = md.soft_targets_for("md", outputs, maps, generator)
    assert len(generated) == 2 and not any(t.requires_grad for t in generated)
    with pytest.raises(ParameterError, match="generator=None"):
        md.soft_targets_for("md", outputs, maps, None)


def test_a_first_order_look_ahead_gives_the_generator_no_gradient_at_all():
    model, generator = tiny()
    meta_loss, _ = md.lookahead_objective(model, generator, batch(6, 8), batch(5, 9), lr=LR, first_order=True)
    assert all(float(g.abs().max()) == 0.0 for g in md.meta_gradient(meta_loss, generator))
    meta_loss, _ = md.lookahead_objective(model, generator, batch(6, 8), batch(5, 9), lr=LR)
    assert all(float(g.abs().max()) > 0.0 for g in md.meta_gradient(meta_loss, generator))


def test_generator_step_changes_the_generator_and_nothing_of_the_network():
    model, generator = tiny()
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    gen_before = [p.clone() for p in generator.parameters()]
    terms = md.generator_step(model, generator, torch.optim.Adam(generator.parameters(), lr=1e-2),
                              batch(6, 8), batch(5, 9), lr=LR)
    assert set(terms) == {"meta_loss", "lookahead_loss", "meta_grad_norm"} and float(terms["meta_grad_norm"]) > 0
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items()), "parameters and BN buffers"
    assert all(p.grad is None for p in model.parameters())
    assert all(not torch.equal(a, b) for a, b in zip(gen_before, generator.parameters()))


# ----------------------------------------------------------------------------------------- Algorithm 1

def test_training_records_meta_epochs_every_m_epochs_and_every_exit():
    torch.manual_seed(0)
    method = md.MetaDistiller(MultiExit(SmallCNN(num_classes=3, width=2)), meta_every=2)
    assert method.generator is None   # built by fit, from the run's seed
    history = fit(method, tiny_digits(), epochs=3, lr=0.05, batch_size=8, seed=0, progress=False)
    assert isinstance(method.generator, LabelGenerator)
    assert [r["meta_epoch"] for r in history.records] == [True, False, True]
    assert all({"meta_loss", "meta_seconds", "meta_grad_norm"} <= set(r) for r in history.records if r["meta_epoch"])
    assert not any("meta_loss" in r for r in history.records if not r["meta_epoch"])
    assert {"test_acc", "test_acc_exit1", "test_acc_exit2", "test_acc_ensemble", "train_acc", "kd_exit1",
            "target_entropy2"} <= set(history.last)
    history = fit(method, tiny_digits(), epochs=2, lr=0.05, batch_size=8, seed=0, progress=False, history=history)
    assert [r["meta_epoch"] for r in history.records] == [True, False, True, False, True], "resumed: epochs 4, 5"


def test_the_generator_is_built_from_the_runs_seed_and_leaves_the_global_rng_alone():
    torch.manual_seed(1)
    model = MultiExit(SmallCNN(num_classes=3, width=2))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(11 + 7919)
        expected = LabelGenerator.for_model(model)
    method, state = md.MetaDistiller(model), torch.get_rng_state()
    started(method, tiny_digits(), seed=11, epoch=0)
    assert torch.equal(state, torch.get_rng_state())
    built, expected = method.generator.state_dict(), expected.state_dict()
    assert all(torch.equal(built[k], expected[k]) for k in expected)
    assert md.MetaDistiller(model, mode="sd", generator=expected).generator is None


@pytest.mark.parametrize("mode", ["md", "sd"])
def test_with_alpha_zero_every_mode_trains_exactly_the_dsn_network(mode):
    """ALPHA = 0 removes the soft term of Eq. (4): MD (generator steps included) and SD then train the very
    same network as DSN, bit for bit: the look-ahead never writes the network."""
    data, states = tiny_digits(), {}
    for m in ("dsn", mode):
        torch.manual_seed(3)
        model = MultiExit(SmallCNN(num_classes=3, width=2))
        fit(md.MetaDistiller(model, mode=m, alpha=0.0, meta_every=1), data, epochs=2, lr=0.1, batch_size=8, seed=3,
            progress=False)
        states[m] = model.state_dict()
    assert all(torch.equal(states["dsn"][k], states[mode][k]) for k in states["dsn"])
    torch.manual_seed(3)   # and with ALPHA > 0 the soft targets do change the network
    model = MultiExit(SmallCNN(num_classes=3, width=2))
    fit(md.MetaDistiller(model, mode=mode, alpha=0.5, meta_every=1), data, epochs=2, lr=0.1, batch_size=8, seed=3,
        progress=False)
    assert not all(torch.equal(states["dsn"][k], model.state_dict()[k]) for k in states["dsn"])


def test_the_registry_card():
    assert registry.get("metadistiller") is md.MetaDistiller
    card = registry.card("metadistiller")
    assert set(registry.CARD_FIELDS) <= set(card) and card["loop"] == "epochs" and "second order" in card["order"]


# ------------------------------------------------------------------- notebook 04's runs in worker processes

def test_notebook_04_runs_in_a_worker_equal_the_runs_in_this_process():
    """Notebook 04 trains its MD run, its bottleneck DSN and its KD teacher in workers while the notebook trains
    DSN (`lesson.train_exits`, `lesson.train_teacher`): each must be the network the notebook would train itself."""
    import functools

    from kdlab import parallel
    from kdlab.data import load
    from kdlab.lessons import metadistiller as lesson

    data = load("digits", train_size=120, seed=0)
    recipe = dict(epochs=2, lr=0.05, batch_size=64)
    model = dict(width=4, head="pool", num_exits=3)
    md_job = parallel.start(functools.partial(lesson.train_exits, data, 1, model=model, mode="md", alpha=ALPHA,
                                              temperature=TAU, meta_every=1, meta_lr=META_LR, recipe=recipe,
                                              eval_every=1), workers=2)
    teacher_job = parallel.start(functools.partial(lesson.train_teacher, data, 1, width=4, recipe=recipe), workers=2)
    net = lesson.new_model(data, 1, **model)    # what the notebook's cells did before the workers took them
    method = md.MetaDistiller(net, mode="md", alpha=ALPHA, temperature=TAU, meta_every=1, meta_lr=META_LR)
    history = fit(method, data, seed=1, eval_every=1, progress=False, **recipe)
    torch.manual_seed(1)
    teacher = SmallCNN(num_classes=10, width=4)
    fit(teacher, data, seed=1, progress=False, eval_every=2, **recipe)

    theirs, generator, their_history, seconds = md_job.result()
    assert seconds > 0 and their_history.series("test_acc") == history.series("test_acc")
    for mine, other in ((net, theirs), (method.generator, generator), (teacher, teacher_job.result()[0])):
        assert mine.state_dict().keys() == other.state_dict().keys()
        for name, tensor in mine.state_dict().items():
            assert torch.equal(tensor, other.state_dict()[name]), name
