"""kdlab.methods.mmkd trained by `fit`: weights are distributions, the baselines' weights by hand, one
virtual round is the real optimizer's step, the meta step moves phi only, exact equivalences, what the
history records, the hard buffer's policy, the teacher cache, ARI against the paper, bad inputs.
The oracle of the hypergradient and the planted bugs are in test_mmkd_oracle.py."""
import copy
import math
from unittest.mock import patch

import pytest
import torch
import torch.nn.functional as F

from kdlab import meta
from kdlab.data.base import DataSplits
from kdlab.data.hard_buffer import HardBuffer
from kdlab.errors import ParameterError
from kdlab.lessons import mmkd as lesson
from kdlab.methods import mmkd, mmkd_baselines, registry
from kdlab.methods.base import Batch, Recipe, Run
from kdlab.models import MLP, SmallCNN
from kdlab.models.meta_weight import DistillationStudent, MMKDNets, teacher_outputs
from kdlab.train import fit

# ----------------------------------------------------------------------------------------- helpers


def tiny_setup(dtype=torch.float64, batch=4, seed=0, **options):
    """A 4-5-3 student with regressors (theta), two 4-6-3 teachers, meta nets (phi), one batch
    (x, y, teacher_logits, *teacher_features) and the options object (an MMKD), all in `dtype`."""
    torch.manual_seed(seed)
    student = MLP(4, hidden=(5,), num_classes=3).to(dtype)
    teachers = [MLP(4, hidden=(6,), num_classes=3).to(dtype) for _ in range(2)]
    wrapper = DistillationStudent(student, [6, 6]).to(dtype)
    nets = MMKDNets(3, 2, batch).to(dtype)
    g = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(batch, 4, generator=g, dtype=dtype)
    y = torch.arange(batch) % 3
    t_logits, t_feats = teacher_outputs(teachers, x)
    return wrapper, teachers, nets, (x, y, t_logits, *t_feats), mmkd.MMKD(student, teachers, **options)


def toy_data(n=40, num_classes=3, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    centres = 3 * torch.randn(num_classes, 6, generator=g, dtype=dtype)
    y = torch.arange(n) % num_classes
    x = centres[y] + torch.randn(n, 6, generator=g, dtype=dtype)
    yt = torch.arange(n // 2) % num_classes
    xt = centres[yt] + torch.randn(n // 2, 6, generator=g, dtype=dtype)
    return DataSplits("toy", x, y, xt, yt, num_classes, (6,))


def toy_teachers(num_classes=3, seed=0):
    torch.manual_seed(seed)
    return [MLP(6, hidden=(7,), num_classes=num_classes), MLP(6, hidden=(9,), num_classes=num_classes)]


FIT = dict(epochs=2, lr=0.05, batch_size=8, eval_every=2, progress=False)
OPTIONS = dict(buffer_size=16, meta_every=2)


def train(options=(), seed=0, **fit_options):
    data = toy_data()
    torch.manual_seed(seed)
    method = mmkd.MMKD(MLP(6, hidden=(5,), num_classes=3), toy_teachers(), **{**OPTIONS, **dict(options)})
    return method, fit(method, data, seed=seed, **{**FIT, **fit_options})


# ------------------------------------------------------------------------------ weights are distributions

@pytest.mark.parametrize("weighting", ["mmkd", "aver", "ebkd", "camkd"])
def test_teacher_weights_are_a_distribution_per_sample(weighting):
    wrapper, _, nets, (x, y, t_logits, *t_feats), s = tiny_setup(weighting=weighting, beta=1.0)
    w_logit, w_feat = mmkd.teacher_weights(nets, wrapper(x), y, t_logits, t_feats, s)
    for w in (w_logit, w_feat):
        assert w.shape == (4, 2)
        assert (w >= 0).all()
        assert torch.allclose(w.sum(1), torch.ones(4, dtype=w.dtype))


def test_meta_weight_net_input_widths_follow_the_paper():
    wrapper, _, nets, (x, y, t_logits, *t_feats), _ = tiny_setup()
    logits, feature, _ = wrapper(x)
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
    b = mmkd_baselines
    assert torch.allclose(b.aver_weights(t), torch.full((1, 3), 1 / 3, dtype=torch.float64))
    assert torch.allclose(b.ebkd_weights(t), torch.tensor([ebkd], dtype=torch.float64))
    assert torch.allclose(b.camkd_weights(t, torch.tensor([label])), torch.tensor([camkd], dtype=torch.float64))
    # EBKD trusts the most confident teacher, right or wrong; CA-MKD the one that agrees with the label
    assert int(b.ebkd_weights(t).argmin()) == 1
    assert int(b.camkd_weights(t, torch.tensor([label])).argmin()) == 2


def test_per_teacher_kd_is_hinton_s_kl_per_teacher_and_sample():
    _, _, _, (x, y, t_logits, *_), _ = tiny_setup()
    s = torch.randn(4, 3, dtype=torch.float64)
    per = mmkd.per_teacher_kd(s, t_logits, 3.0)
    for k in range(2):
        p_t = F.softmax(t_logits[:, k] / 3.0, dim=-1)
        by_hand = 9.0 * F.kl_div(F.log_softmax(s / 3.0, dim=-1), p_t, reduction="none").sum(-1)
        assert torch.allclose(per[:, k], by_hand)


# ------------------------------------------------------------------------------ the virtual rounds

def test_one_virtual_round_is_the_real_optimizer_s_step():
    """R = 1: the copy's CE step from the optimizer's momentum buffers, scored on the same batch, equals a
    real torch.optim.SGD step (momentum, weight decay) taken on a deep copy."""
    wrapper, _, nets, batch, s = tiny_setup(beta=1.0)
    x, y = batch[:2]
    optimizer = torch.optim.SGD(wrapper.parameters(), lr=0.2, momentum=0.9, weight_decay=0.01)
    for _ in range(2):
        optimizer.zero_grad()
        F.cross_entropy(wrapper(x)[0], y).backward()
        optimizer.step()
    twin = copy.deepcopy(wrapper)
    twin_optimizer = torch.optim.SGD(twin.parameters(), lr=0.2, momentum=0.9, weight_decay=0.01)
    twin_optimizer.load_state_dict(copy.deepcopy(optimizer.state_dict()))  # load_state_dict shares tensors
    twin_optimizer.zero_grad()
    F.cross_entropy(twin(x)[0], y).backward()
    twin_optimizer.step()
    expected = F.cross_entropy(twin(x)[0], y)
    loss, _ = mmkd.meta_objective(wrapper, nets, batch, s, lr=0.2, momentum=0.9, weight_decay=0.01,
                                  velocity=meta.momentum_buffers(optimizer, wrapper), virtual_steps=1)
    assert abs(loss.item() - expected.item()) < 1e-12
    without_momentum, _ = mmkd.meta_objective(wrapper, nets, batch, s, lr=0.2, weight_decay=0.01, momentum=0.0,
                                              virtual_steps=1)
    assert abs(without_momentum.item() - expected.item()) > 1e-6


def test_a_single_virtual_round_gives_the_weight_nets_no_gradient():
    """With R = 1 the copy takes only the CE step: phi never enters, so its gradient is exactly zero."""
    wrapper, _, nets, batch, s = tiny_setup(beta=1.0)
    loss, _ = mmkd.meta_objective(wrapper, nets, batch, s, lr=0.3, virtual_steps=1)
    assert all(g is None for g in torch.autograd.grad(loss, list(nets.parameters()), allow_unused=True))


# ------------------------------------------------------------------------------ the method in fit

def test_meta_step_moves_the_weight_nets_and_nothing_of_the_real_student():
    method, _ = train(epochs=1, schedule="constant")   # (cosine ends at lr 0, where a copy does not move)
    state = copy.deepcopy(method.wrapper.state_dict())
    grads = {n: p.grad.clone() for n, p in method.wrapper.named_parameters()}
    buffers = meta.momentum_buffers(method.optimizer, method.wrapper)
    phi_before = copy.deepcopy(method.nets.state_dict())
    out = method.meta_step(method.buffer.sample())
    assert out["hypergrad_norm"] > 0
    assert all(torch.equal(v, state[n]) for n, v in method.wrapper.state_dict().items())
    assert all(torch.equal(p.grad, grads[n]) for n, p in method.wrapper.named_parameters())
    after = meta.momentum_buffers(method.optimizer, method.wrapper)
    assert all(torch.equal(after[n], buffers[n]) for n in buffers)
    assert any(not torch.equal(p, phi_before[n]) for n, p in method.nets.state_dict().items())


def test_without_learned_weights_mmkd_is_exactly_aver():
    """No logit weights and no feature loss: nothing to meta-learn, so MMKD must reproduce AVER bit for bit."""
    results = []
    for options in (dict(weighting="aver", beta=0.0), dict(logit_weights=False, feature_loss=False)):
        method, history = train(options, seed=3)
        assert "meta_loss" not in history.last and method.buffer is None
        results.append([p.detach().clone() for p in method.model.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*results))


def prepared(seed, data=None, global_seed=None):
    """An MMKD configured and prepared as `fit` does, for a run seeded with `seed` (the global random
    state seeded with `global_seed` right before `prepare`, if given)."""
    run = Run(seed=seed, epochs=1, batch_size=8, recipe=Recipe(), generator=torch.Generator())
    method = mmkd.MMKD(MLP(6, hidden=(5,), num_classes=3), toy_teachers(), **OPTIONS)
    method.configure(run.recipe, run)
    if global_seed is not None:
        torch.manual_seed(global_seed)
    method.prepare(toy_data() if data is None else data, run)
    return method, run


def test_the_nets_come_from_the_run_s_seed_and_the_global_random_state_is_left_alone():
    a, _ = prepared(4, global_seed=0)
    after = torch.rand(2)
    torch.manual_seed(0)
    assert torch.equal(after, torch.rand(2)), "building the nets must not consume the global random state"
    b, c = prepared(4)[0], prepared(5)[0]
    for x, y in ((a.nets, b.nets), (a.wrapper.regressors, b.wrapper.regressors)):
        assert all(torch.equal(p, q) for p, q in zip(x.parameters(), y.parameters()))
    assert not all(torch.equal(p, q) for p, q in zip(a.nets.parameters(), c.nets.parameters()))


@pytest.mark.parametrize("options", [dict(), dict(hard_buffer=False), dict(logit_weights=False),
                                     dict(feature_weights=False), dict(feature_loss=False),
                                     dict(weighting="ebkd"), dict(weighting="camkd"),
                                     dict(logit_input="probs", gram="raw")])
def test_fit_records_named_losses_weights_buffer_writes_and_meta_terms(options):
    method, history = train(options)
    first, last = history.records[0], history.last
    assert {"loss", "ce", "kd", "feat", "w_logit_0", "w_logit_1", "test_acc"} <= set(last)
    assert "test_acc" not in first                      # eval_every = 2 of 2 epochs
    assert abs(last["w_logit_0"] + last["w_logit_1"] - 1) < 1e-5
    learns = options.get("weighting", "mmkd") == "mmkd" and not (
        options.get("logit_weights") is False and options.get("feature_loss") is False)
    assert ("meta_loss" in last) == learns and ("hypergrad_norm" in last) == learns
    uses_buffer = learns and options.get("hard_buffer", True)
    assert ("buffer_writes" in last) == uses_buffer
    if uses_buffer:                                     # 5 full batches of 8: the first two fill the buffer
        assert first["buffer_writes"] >= OPTIONS["buffer_size"] and isinstance(first["buffer_writes"], int)
    assert history.epochs_done == 2 and isinstance(method.nets, MMKDNets)
    assert not method.model.training and not method.nets.training


def test_meta_terms_are_averaged_over_meta_steps_and_buffer_writes_summed():
    data = toy_data()
    torch.manual_seed(0)
    method = mmkd.MMKD(MLP(6, hidden=(5,), num_classes=3), toy_teachers(), **OPTIONS)
    seen = {"meta": [], "writes": []}
    meta_step, put = method.meta_step, HardBuffer.put

    def recording_meta_step(hard):
        out = meta_step(hard)
        seen["meta"].append(float(out["meta_loss"]))
        return out

    def recording_put(self, samples, wrong):
        seen["writes"].append(put(self, samples, wrong))
        return seen["writes"][-1]

    method.meta_step = recording_meta_step
    with patch.object(HardBuffer, "put", recording_put):
        history = fit(method, data, seed=0, **{**FIT, "epochs": 1})
    assert len(seen["meta"]) == 3                       # global steps 0, 2, 4 of 5 batches
    assert history.last["meta_loss"] == sum(seen["meta"]) / 3
    assert history.last["buffer_writes"] == sum(seen["writes"])


def test_feature_maps_get_convolutional_regressors_and_train():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(24, 1, 8, 8, generator=g), torch.arange(24) % 3
    data = DataSplits("maps", x, y, x[:12], y[:12], 3, (1, 8, 8))
    torch.manual_seed(0)
    teachers = [SmallCNN(3, width=4), SmallCNN(3, width=6)]
    method = mmkd.MMKD(SmallCNN(3, width=2), teachers, feature_index=-2, buffer_size=8, meta_every=1, beta=5.0)
    history = fit(method, data, epochs=1, lr=0.05, batch_size=8, seed=0, progress=False)
    assert all(r.maps for r in method.wrapper.regressors) and math.isfinite(history.last["meta_loss"])


def test_the_card_names_the_paper_and_the_order():
    card = registry.card("mmkd")
    assert "2306.06634" in card["paper"] and "second order" in card["order"] and card["loop"] == "epochs"
    assert registry.get("mmkd") is mmkd.MMKD


# ------------------------------------------------------------------------------ the hard buffer

def ids_in(buffer):
    return set(buffer.store[0][:len(buffer)].long().tolist())


def test_buffer_fills_with_whole_batches_then_replaces_only_misclassified_samples():
    buffer = HardBuffer(capacity=6, batch_size=4, seed=0)
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
    assert len(x) == 4 and len(set(x.tolist())) == 4 and set(x.long().tolist()) <= ids_in(buffer)


def test_buffer_refuses_to_sample_before_it_holds_a_meta_batch():
    with pytest.raises(ParameterError, match="buffer="):
        HardBuffer(capacity=8, batch_size=4).sample()


# ------------------------------------------------------------------------------ teachers, cache, ARI

def test_teacher_zoo_is_trained_once_then_loaded_from_the_cache(tmp_path):
    data = toy_data(n=24)
    specs = {"a": dict(arch="mlp", hidden=(8,), epochs=1, lr=0.05, noise=0.0),
             "b": dict(arch="mlp", hidden=(4,), epochs=1, lr=0.05, noise=0.5)}
    logs = []
    first = lesson.teacher_zoo(data, specs, root=tmp_path, log=logs.append)
    second = lesson.teacher_zoo(data, specs, root=tmp_path, log=logs.append)
    assert sum(" trained in" in line for line in logs) == 2
    assert sum("read from the cache" in line for line in logs) == 2
    for name in specs:
        for p, q in zip(first[name].parameters(), second[name].parameters()):
            assert torch.equal(p, q)
    folder = tmp_path / "cache" / "teachers"
    files = sorted(p.name for p in folder.glob("mmkd-*.pt"))
    assert len(files) == 2 and all((folder / (f + ".sha256")).exists() for f in files)
    logs.clear()
    lesson.teacher_zoo(data, {**specs, "a": {**specs["a"], "epochs": 2}}, root=tmp_path, log=logs.append)
    assert [" trained in" in line for line in logs] == [True, False], "only the changed teacher trains again"


def test_noisy_labels_move_the_asked_fraction_to_other_classes():
    y = torch.arange(1000) % 10
    noisy = lesson.noisy_labels(y, 0.5, seed=0, num_classes=10)
    moved = (noisy != y).float().mean().item()
    assert 0.45 < moved < 0.55 and noisy.min() >= 0 and noisy.max() <= 9


def test_ari_reproduces_the_paper_s_table_one():
    table = lesson.PAPER_TABLE_I
    for baseline, expected in table["ARI"].items():
        assert abs(lesson.ari(table["MMKD"], table[baseline], table["Student"]) - expected) < 0.02
    with pytest.raises(ParameterError, match="ari_settings"):
        lesson.ari([1.0, 2.0], [1.0], [0.0])


def test_weights_on_gives_the_trained_nets_weights_on_whole_batches():
    data = toy_data()
    method, _ = train()
    w_logit, w_feat = lesson.weights_on(method, data.x_train[:20], data.y_train[:20], batch_size=8)
    assert w_logit.shape == w_feat.shape == (16, 2)
    assert torch.allclose(w_logit.sum(1), torch.ones(16)) and torch.allclose(w_feat.sum(1), torch.ones(16))


def test_the_panel_plots_what_each_slider_moves():
    """META_EVERY: the number of meta updates and the weights' path; TEMPERATURE: the mixed soft target;
    BETA: the feature term. Each change is in the data the figure draws."""
    data = toy_data()
    teachers = dict(zip(("a", "b"), toy_teachers()))
    recipe = dict(epochs=2, lr=0.05, batch_size=8, buffer_size=16)
    panel = lesson.mmkd_panel(data, teachers, hidden=(5,), recipe=recipe, meta_every=5)
    base = panel.set()
    assert len(base["batches"]) == 10 and base["meta_batches"].tolist() == [1, 6]
    assert torch.allclose(torch.tensor(base["mixed_target"]).sum(), torch.tensor(1.0))
    every_batch = panel.set(META_EVERY=1)
    assert every_batch["meta_batches"].tolist() == list(range(1, 11)) and len(every_batch["meta_loss"]) == 10
    assert any(abs(every_batch["weights"][n][-1] - base["weights"][n][-1]) > 1e-6 for n in teachers)
    soft = panel.set(META_EVERY=5, TEMPERATURE=10.0)
    assert soft["mixed_target"].max() < base["mixed_target"].max()  # a higher temperature flattens the target
    no_features = panel.set(TEMPERATURE=4.0, BETA=0.0)
    assert (no_features["terms"]["beta x feature term (Eq. 7)"] == 0).all()
    assert (base["terms"]["beta x feature term (Eq. 7)"] > 0).all()
    fig = panel.figure()
    assert [ax.get_title() for ax in fig.axes][1] == "meta loss at each of the 2 meta updates (Eq. 12)"


def test_watched_mmkd_trains_exactly_as_mmkd():
    data = toy_data()
    teachers = dict(zip(("a", "b"), toy_teachers()))
    recipe = dict(epochs=2, lr=0.05, batch_size=8, buffer_size=16, meta_every=2)
    plain = lesson.run_method(data, teachers, seed=0, hidden=(5,), recipe=recipe)
    watched = lesson.run_method(data, teachers, seed=0, hidden=(5,), recipe=recipe, method_class=lesson.WatchedMMKD)
    assert plain[0] == watched[0]
    for p, q in zip(plain[1].model.parameters(), watched[1].model.parameters()):
        assert torch.equal(p, q)
    assert len(watched[1].meta_batches) == 5 and len(watched[1].batch_weights) == 10


def test_the_weight_map_scale_is_centred_at_uniform_and_fits_the_data():
    weights = torch.tensor([[0.2, 0.3, 0.5], [0.3, 0.4, 0.3]])
    norm = lesson.weight_norm(weights)
    assert norm.vcenter == pytest.approx(1 / 3) and norm.vmin == pytest.approx(0.2) and norm.vmax == pytest.approx(0.5)
    flat = lesson.weight_norm(torch.full((4, 4), 0.25))
    assert flat.vmin < 0.25 < flat.vmax


# ------------------------------------------------------------------------------ bad inputs

def test_fewer_than_two_teachers_are_refused():
    student, teachers = MLP(6, hidden=(5,), num_classes=3), toy_teachers()
    for bad in (teachers[:1], teachers[0], []):
        with pytest.raises(ParameterError, match="NUM_TEACHERS=[01] "):
            mmkd.MMKD(student, bad)


def test_teachers_with_different_class_counts_are_refused():
    data = toy_data()
    mixed = [MLP(6, hidden=(7,), num_classes=3), MLP(6, hidden=(7,), num_classes=4)]
    with pytest.raises(ParameterError, match=r"teacher_classes=\[3, 3, 4\]"):
        fit(mmkd.MMKD(MLP(6, hidden=(5,), num_classes=3), mixed), data, **FIT)
    with pytest.raises(ParameterError, match=r"teacher_classes=\[3, 4, 4\]"):
        fit(mmkd.MMKD(MLP(6, hidden=(5,), num_classes=3), toy_teachers(num_classes=4)), data, **FIT)


@pytest.mark.parametrize("options, fit_options, name", [
    (dict(buffer_size=4), {}, "buffer_size"), (dict(), dict(batch_size=41), "batch_size"),
    (dict(), dict(optimizer="adam"), "mmkd_optimizer")])
def test_sizes_and_the_optimizer_are_checked_when_fit_starts(options, fit_options, name):
    method = mmkd.MMKD(MLP(6, hidden=(5,), num_classes=3), toy_teachers(), **options)
    with pytest.raises(ParameterError, match=f"^{name}=.* is not allowed"):
        fit(method, toy_data(), **{**FIT, **fit_options})


@pytest.mark.parametrize("options, name", [
    (dict(weighting="mean"), "weighting"), (dict(logit_input="soft"), "logit_input"), (dict(gram="cosine"), "gram"),
    (dict(meta_every=0), "META_EVERY"), (dict(beta=-1.0), "BETA"), (dict(temperature=0.0), "TEMPERATURE"),
    (dict(virtual_steps=0), "virtual_steps"), (dict(meta_lr=0.0), "META_LR")])
def test_other_bad_arguments_name_the_parameter(options, name):
    with pytest.raises(ParameterError, match=f"^{name}=.* is not allowed"):
        mmkd.MMKD(MLP(6, hidden=(5,), num_classes=3), toy_teachers(), **options)


def test_a_step_looks_up_the_cached_teacher_outputs_by_the_batch_s_row_indices():
    data = toy_data()
    method, run = prepared(0, data)
    index = torch.tensor([5, 1, 7, 3, 0, 2, 9, 8])
    logits, feats = teacher_outputs(method.teachers, data.x_train[index])
    cached_logits, cached_feats = method.cache[0][index], [f[index] for f in method.cache[1]]
    assert torch.allclose(logits, cached_logits) and all(torch.allclose(a, b) for a, b in zip(feats, cached_feats))
    method.on_epoch_start(run)
    losses = method.step(Batch(data.x_train[index], data.y_train[index], index), run)
    assert math.isfinite(float(losses["loss"])) and len(method.buffer) == 8


def test_per_teacher_kd_values_are_exact_at_any_temperature_and_gradients_are_the_textbooks():
    """At T = 1e9 the textbook per-teacher KL cancels to noise; MMKD's logged KD values come from
    kdlab.losses.kd_divergence, its gradients from the textbook formula, bit for bit."""
    import torch.nn.functional as F

    from kdlab import losses

    torch.manual_seed(0)
    student = torch.randn(4, 10, dtype=torch.float64, requires_grad=True)
    teachers = torch.randn(4, 3, 10, dtype=torch.float64)
    for temperature in (4.0, 1e9):
        values = mmkd.per_teacher_kd(student, teachers, temperature)
        exact = losses.kd_divergence_exact(student.unsqueeze(1), teachers, temperature)
        assert torch.allclose(values.detach(), exact, rtol=1e-8, atol=0), temperature
        log_p_s = F.log_softmax(student / temperature, -1).unsqueeze(1)
        log_p_t = F.log_softmax(teachers / temperature, -1)
        textbook = temperature**2 * (log_p_t.exp() * (log_p_t - log_p_s)).sum(-1)
        (ours,) = torch.autograd.grad(values.sum(), student)
        (reference,) = torch.autograd.grad(textbook.sum(), student)
        assert torch.equal(ours, reference)
