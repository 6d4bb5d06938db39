"""kdlab.methods.mmkd: weights are distributions, the baselines' weights by hand, the meta-weight nets'
hypergradient against finite differences (float64), the hard buffer's policy, the meta step leaves the
real student alone, exact equivalences, the teacher cache, ARI against the paper, bad inputs."""
import copy
import math

import pytest
import torch
import torch.nn.functional as F

from kdlab import meta
from kdlab.data.base import DataSplits
from kdlab.errors import ParameterError
from kdlab.lessons import mmkd as lesson
from kdlab.methods import mmkd
from kdlab.models import MLP

from ..gradcheck import finite_differences, relative_error


# ----------------------------------------------------------------------------------------- helpers

def tiny_setup(dtype=torch.float64, batch=4, seed=0):
    """A 4-5-3 student with regressors, two 4-6-3 teachers, meta nets and one batch, all in `dtype`."""
    torch.manual_seed(seed)
    student = MLP(4, hidden=(5,), num_classes=3).to(dtype)
    teachers = [MLP(4, hidden=(6,), num_classes=3).to(dtype) for _ in range(2)]
    model = mmkd.DistillationStudent(student, [6, 6]).to(dtype)
    nets = mmkd.MMKDNets(3, 2, batch).to(dtype)
    g = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(batch, 4, generator=g, dtype=dtype)
    y = torch.arange(batch) % 3
    t_logits, t_feats = mmkd.teacher_outputs(teachers, x)
    return model, teachers, nets, (x, y, t_logits, *t_feats)


def toy_data(n=40, num_classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = 3 * torch.randn(num_classes, 6, generator=g)
    y = torch.arange(n) % num_classes
    x = centres[y] + torch.randn(n, 6, generator=g)
    yt = torch.arange(n // 2) % num_classes
    xt = centres[yt] + torch.randn(n // 2, 6, generator=g)
    return DataSplits("toy", x, y, xt, yt, num_classes, (6,))


def toy_teachers(num_classes=3, seed=0):
    torch.manual_seed(seed)
    return [MLP(6, hidden=(7,), num_classes=num_classes), MLP(6, hidden=(9,), num_classes=num_classes)]


TOY_RECIPE = dict(epochs=2, lr=0.05, batch_size=8, buffer_size=16, meta_every=2)


# ------------------------------------------------------------------------------ weights are distributions

@pytest.mark.parametrize("weighting", mmkd.WEIGHTINGS)
def test_teacher_weights_are_a_distribution_per_sample(weighting):
    model, _, nets, (x, y, t_logits, *t_feats) = tiny_setup()
    settings = mmkd.Settings(weighting=weighting, beta=1.0)
    w_logit, w_feat = mmkd.teacher_weights(nets, model(x), y, t_logits, t_feats, settings)
    for w in (w_logit, w_feat):
        assert w.shape == (4, 2)
        assert (w >= 0).all()
        assert torch.allclose(w.sum(1), torch.ones(4, dtype=w.dtype))


def test_meta_weight_net_input_widths_follow_the_paper():
    model, _, nets, (x, y, t_logits, *t_feats) = tiny_setup()
    logits, feature, _ = model(x)
    assert mmkd.logit_net_input(t_logits, logits).shape == (4, 3 * 3)          # C (K + 1)
    assert mmkd.feature_net_input(t_feats, feature).shape == (4, 4 * 3)        # B (K + 1)
    probs = mmkd.logit_net_input(t_logits, logits, "probs", 2.0).view(4, 3, 3)
    assert torch.allclose(probs.sum(-1), torch.ones(4, 3, dtype=probs.dtype))
    gram = mmkd.similarity_matrix(t_feats[0])
    assert torch.allclose(gram.norm(dim=1), torch.ones(4, dtype=gram.dtype))
    raw = mmkd.similarity_matrix(t_feats[0], normalize=False)
    assert torch.allclose(raw, t_feats[0] @ t_feats[0].t())


# ------------------------------------------------------------------------------ baselines by hand

def test_baseline_weights_match_hand_computed_values():
    logits = [[3.0, 0.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 2.5]]      # three teachers, one sample, 3 classes
    label = 0
    t = torch.tensor([logits], dtype=torch.float64)

    def softmax(z):
        e = [math.exp(v) for v in z]
        return [v / sum(e) for v in e]

    entropies = [-sum(p * math.log(p) for p in softmax(z)) for z in logits]
    ebkd = [(1 - h / sum(entropies)) / 2 for h in entropies]
    ces = [-math.log(softmax(z)[label]) for z in logits]
    camkd = [(1 - math.exp(c) / sum(math.exp(v) for v in ces)) / 2 for c in ces]

    assert torch.allclose(mmkd.aver_weights(t), torch.full((1, 3), 1 / 3, dtype=torch.float64))
    assert torch.allclose(mmkd.ebkd_weights(t), torch.tensor([ebkd], dtype=torch.float64))
    assert torch.allclose(mmkd.camkd_weights(t, torch.tensor([label])), torch.tensor([camkd], dtype=torch.float64))
    # EBKD trusts the most confident teacher, right or wrong; CA-MKD the one that agrees with the label
    assert int(mmkd.ebkd_weights(t).argmin()) == 1
    assert int(mmkd.camkd_weights(t, torch.tensor([label])).argmin()) == 2


def test_per_teacher_kd_equals_the_kit_s_kd_loss_per_teacher():
    _, _, _, (x, y, t_logits, *_) = tiny_setup()
    s = torch.randn(4, 3, dtype=torch.float64)
    from kdlab.losses import kd_loss

    per = mmkd.per_teacher_kd(s, t_logits, 3.0)
    for k in range(2):
        assert torch.allclose(per[:, k].mean(), kd_loss(s, t_logits[:, k], 3.0))
    w = torch.tensor([[0.25, 0.75]] * 4, dtype=torch.float64)
    assert torch.allclose(mmkd.weighted_sum(per, w), 0.25 * per[:, 0].mean() + 0.75 * per[:, 1].mean())


# ------------------------------------------------------------------------------ the hypergradient

@pytest.mark.parametrize("logit_input", mmkd.LOGIT_INPUTS)
def test_meta_weight_nets_get_the_hypergradient_of_finite_differences(logit_input):
    """Two virtual rounds (matching, then CE) from a non-zero momentum buffer with weight decay: the
    hypergradient of both weight nets is non-zero and equals central finite differences in float64."""
    model, _, nets, batch = tiny_setup()
    settings = mmkd.Settings(beta=3.0, logit_input=logit_input)
    g = torch.Generator().manual_seed(5)
    velocity = {n: 0.1 * torch.randn(p.shape, generator=g, dtype=p.dtype) for n, p in model.named_parameters()}

    def objective():
        loss, _ = mmkd.meta_objective(model, nets, batch, settings, lr=0.3, momentum=0.9, weight_decay=0.01,
                                      velocity=velocity, virtual_steps=2)
        return loss

    phi = list(nets.parameters())
    analytic = torch.autograd.grad(objective(), phi)
    for net in (nets.logit_net, nets.feature_net):
        assert all(p.grad is None for p in net.parameters())
    logit_part, feature_part = analytic[:4], analytic[4:]
    assert sum(float(g.abs().sum()) for g in logit_part) > 0
    assert sum(float(g.abs().sum()) for g in feature_part) > 0
    assert relative_error(analytic, finite_differences(objective, phi)) <= 1e-4


def test_the_virtual_round_is_the_real_optimizer_s_step():
    """R = 1: the copy's CE step from the optimizer's momentum buffers, scored on the same batch, equals a
    real torch.optim.SGD step (momentum, weight decay) taken on a deep copy."""
    model, _, nets, batch = tiny_setup()
    settings = mmkd.Settings(beta=1.0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.2, momentum=0.9, weight_decay=0.01)
    for _ in range(2):
        mmkd.student_step(model, nets, optimizer, batch, settings)
    twin = copy.deepcopy(model)
    twin_optimizer = torch.optim.SGD(twin.parameters(), lr=0.2, momentum=0.9, weight_decay=0.01)
    twin_optimizer.load_state_dict(copy.deepcopy(optimizer.state_dict()))  # load_state_dict shares tensors
    x, y = batch[:2]
    twin_optimizer.zero_grad()
    F.cross_entropy(twin(x)[0], y).backward()
    twin_optimizer.step()
    expected = F.cross_entropy(twin(x)[0], y)
    loss, _ = mmkd.meta_objective(model, nets, batch, settings, lr=0.2, momentum=0.9, weight_decay=0.01,
                                  velocity=meta.momentum_buffers(optimizer, model), virtual_steps=1)
    assert abs(loss.item() - expected.item()) < 1e-12
    without_momentum, _ = mmkd.meta_objective(model, nets, batch, settings, lr=0.2, weight_decay=0.01,
                                              momentum=0.0, virtual_steps=1)
    assert abs(without_momentum.item() - expected.item()) > 1e-6


def test_a_single_virtual_round_gives_the_weight_nets_no_gradient():
    """With R = 1 the copy takes only the CE step: phi never enters, so its gradient is exactly zero."""
    model, _, nets, batch = tiny_setup()
    loss, _ = mmkd.meta_objective(model, nets, batch, mmkd.Settings(beta=1.0), lr=0.3, virtual_steps=1)
    grads = torch.autograd.grad(loss, list(nets.parameters()), allow_unused=True)
    assert all(g is None for g in grads)


# ------------------------------------------------------------------------------ the meta step

def test_meta_step_changes_the_weight_nets_and_nothing_of_the_real_student():
    model, _, nets, batch = tiny_setup(torch.float32)
    settings = mmkd.Settings(beta=1.0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    meta_optimizer = torch.optim.Adam(nets.parameters(), lr=1e-2)
    mmkd.student_step(model, nets, optimizer, batch, settings)              # creates momentum buffers
    assert all(p.grad is None for p in nets.parameters()), "the real step must not give phi a gradient"
    state = copy.deepcopy(model.state_dict())
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    buffers = copy.deepcopy(meta.momentum_buffers(optimizer, model))
    phi_before = copy.deepcopy(nets.state_dict())

    out = mmkd.meta_step(model, nets, meta_optimizer, optimizer, batch, settings, lr=0.1)

    assert out["hypergrad_norm"] > 0
    for name, value in model.state_dict().items():
        assert torch.equal(value, state[name]), f"{name} changed"
    for name, p in model.named_parameters():
        assert torch.equal(p.grad, grads[name])
    after = meta.momentum_buffers(optimizer, model)
    assert all(torch.equal(after[n], buffers[n]) for n in buffers)
    assert any(not torch.equal(p, phi_before[n]) for n, p in nets.state_dict().items())


def test_without_learned_weights_mmkd_is_exactly_aver():
    """No logit weights and no feature loss: nothing to meta-learn, so MMKD must reproduce AVER bit for bit."""
    data, results = toy_data(), []
    for options in (dict(weighting="aver", beta=0.0), dict(weighting="mmkd", logit_weights=False, feature_loss=False)):
        torch.manual_seed(3)
        student = MLP(6, hidden=(5,), num_classes=3)
        student, history, _ = mmkd.train_mmkd(student, toy_teachers(), data, seed=3, **TOY_RECIPE, **options)
        assert "meta_loss" not in history.last
        results.append([p.detach().clone() for p in student.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*results))


@pytest.mark.parametrize("options", [dict(), dict(hard_buffer=False), dict(logit_weights=False),
                                     dict(feature_weights=False), dict(feature_loss=False),
                                     dict(weighting="ebkd"), dict(weighting="camkd"),
                                     dict(logit_input="probs", gram="raw")])
def test_train_mmkd_runs_and_records_named_losses_and_weights(options):
    data = toy_data()
    torch.manual_seed(0)
    student = MLP(6, hidden=(5,), num_classes=3)
    student, history, nets = mmkd.train_mmkd(student, toy_teachers(), data, seed=0, **TOY_RECIPE, **options)
    last = history.last
    assert {"loss", "ce", "kd", "feat", "w_logit_0", "w_logit_1", "test_acc"} <= set(last)
    assert abs(last["w_logit_0"] + last["w_logit_1"] - 1) < 1e-5
    learns = options.get("weighting", "mmkd") == "mmkd" and not (
        options.get("logit_weights") is False and options.get("feature_loss") is False)
    assert ("meta_loss" in last) == learns
    uses_buffer = learns and options.get("hard_buffer", True)
    assert ("buffer_writes" in last) == uses_buffer
    if uses_buffer:
        assert history.records[0]["buffer_writes"] >= TOY_RECIPE["buffer_size"]   # the first epoch fills it
    assert history.epochs_done == 2 and isinstance(nets, mmkd.MMKDNets)


# ------------------------------------------------------------------------------ the hard buffer

def ids_in(buffer):
    return set(buffer.store[0][:len(buffer)].long().tolist())


def test_buffer_fills_with_whole_batches_then_replaces_only_misclassified_samples():
    buffer = mmkd.HardBuffer(capacity=6, batch_size=4, seed=0)
    everything_right = torch.zeros(4, dtype=torch.bool)
    assert buffer.put((torch.arange(4.0), torch.arange(4)), everything_right) == 4     # filling ignores the mask
    assert len(buffer) == 4 and not buffer.full
    assert buffer.put((torch.arange(4.0, 8.0), torch.arange(4)), everything_right) == 2  # truncated to capacity
    assert buffer.full and ids_in(buffer) == {0, 1, 2, 3, 4, 5}

    wrong = torch.tensor([False, True, False, True])
    assert buffer.put((torch.arange(100.0, 104.0), torch.arange(4)), wrong) == 2
    held = ids_in(buffer)
    assert {101, 103} <= held and not {100, 102} & held and len(held) == 6
    assert buffer.put((torch.arange(200.0, 204.0), torch.arange(4)), everything_right) == 0
    assert ids_in(buffer) == held

    many_wrong = torch.ones(8, dtype=torch.bool)                   # more hard samples than slots
    assert buffer.put((torch.arange(300.0, 308.0), torch.arange(8)), many_wrong) == 6
    assert ids_in(buffer) <= set(range(300, 308))
    x, y = buffer.sample()
    assert len(x) == 4 and len(set(x.tolist())) == 4


def test_buffer_refuses_to_sample_before_it_holds_a_meta_batch():
    buffer = mmkd.HardBuffer(capacity=8, batch_size=4)
    with pytest.raises(ParameterError, match="buffer="):
        buffer.sample()


# ------------------------------------------------------------------------------ teachers, cache, ARI

def test_teacher_zoo_is_trained_once_then_loaded_from_the_cache(tmp_path):
    data = toy_data(n=24)
    specs = {"a": dict(arch="mlp", hidden=(8,), epochs=1, lr=0.05, noise=0.0),
             "b": dict(arch="mlp", hidden=(4,), epochs=1, lr=0.05, noise=0.5)}
    logs = []
    first = lesson.teacher_zoo(data, {"dataset": "toy"}, specs, root=tmp_path, log=logs.append)
    second = lesson.teacher_zoo(data, {"dataset": "toy"}, specs, root=tmp_path, log=logs.append)
    assert sum("trained" in line for line in logs) == 2 and sum("from cache" in line for line in logs) == 2
    for name in specs:
        for p, q in zip(first[name].parameters(), second[name].parameters()):
            assert torch.equal(p, q)
    files = sorted(p.name for p in (tmp_path / "cache").glob("mmkd-teacher-*.pt"))
    assert len(files) == 2 and all((tmp_path / "cache" / (f + ".sha256")).exists() for f in files)
    other = lesson.teacher_key("a", {**specs["a"], "epochs": 2}, {"dataset": "toy"})
    assert other != lesson.teacher_key("a", specs["a"], {"dataset": "toy"})


def test_noisy_labels_move_the_asked_fraction_to_other_classes():
    y = torch.arange(1000) % 10
    noisy = lesson.noisy_labels(y, 0.5, seed=0, num_classes=10)
    moved = (noisy != y).float().mean().item()
    assert 0.45 < moved < 0.55 and noisy.min() >= 0 and noisy.max() <= 9


def test_verdict_reads_the_interval_not_the_mean():
    from kdlab.stats import paired_difference

    assert "better" in lesson.verdict(paired_difference([2.0, 3.0, 2.5], [1.0, 1.5, 1.2]), "A", "B")
    assert "worse" in lesson.verdict(paired_difference([1.0, 1.5, 1.2], [2.0, 3.0, 2.5]), "A", "B")
    assert "cannot be told apart" in lesson.verdict(paired_difference([2.0, 0.0, 1.5], [1.0, 1.0, 1.0]), "A", "B")


def test_ari_reproduces_the_paper_s_table_one():
    table = lesson.PAPER_TABLE_I
    for baseline, expected in table["ARI"].items():
        assert abs(lesson.ari(table["MMKD"], table[baseline], table["Student"]) - expected) < 0.02
    with pytest.raises(ParameterError):
        lesson.ari([1.0, 2.0], [1.0], [0.0])


# ------------------------------------------------------------------------------ bad inputs

def test_fewer_than_two_teachers_are_refused():
    data, teachers = toy_data(), toy_teachers()
    student = MLP(6, hidden=(5,), num_classes=3)
    for bad in (teachers[:1], teachers[0], []):
        with pytest.raises(ParameterError, match="teachers=.*at least 2 teachers"):
            mmkd.train_mmkd(student, bad, data, **TOY_RECIPE)


def test_teachers_with_different_class_counts_are_refused():
    data = toy_data()
    student = MLP(6, hidden=(5,), num_classes=3)
    mixed = [MLP(6, hidden=(7,), num_classes=3), MLP(6, hidden=(7,), num_classes=4)]
    with pytest.raises(ParameterError, match=r"class counts \[3, 4\]"):
        mmkd.train_mmkd(student, mixed, data, **TOY_RECIPE)
    with pytest.raises(ParameterError, match="same 3 classes .the student's number of classes"):
        mmkd.train_mmkd(student, toy_teachers(num_classes=4), data, **TOY_RECIPE)


def test_buffer_smaller_than_the_meta_batch_is_refused():
    with pytest.raises(ParameterError, match=r"buffer_size=4 .*meta batch size \(batch_size=8\)"):
        mmkd.train_mmkd(MLP(6, hidden=(5,), num_classes=3), toy_teachers(), toy_data(),
                        **{**TOY_RECIPE, "buffer_size": 4})
    with pytest.raises(ParameterError, match="buffer_size="):
        mmkd.HardBuffer(capacity=3, batch_size=4)


@pytest.mark.parametrize("options, name", [(dict(weighting="mean"), "weighting"), (dict(logit_input="soft"), "logit_input"),
                                           (dict(gram="cosine"), "gram"), (dict(meta_every=0), "META_EVERY"),
                                           (dict(beta=-1.0), "BETA"), (dict(temperature=0.0), "TEMPERATURE"),
                                           (dict(batch_size=41), "batch_size"), (dict(virtual_steps=0), "virtual_steps")])
def test_other_bad_arguments_name_the_parameter(options, name):
    with pytest.raises(ParameterError, match=f"^{name}=.* is not allowed"):
        mmkd.train_mmkd(MLP(6, hidden=(5,), num_classes=3), toy_teachers(), toy_data(), **{**TOY_RECIPE, **options})
