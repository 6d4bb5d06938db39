"""kdlab.meta: meta-gradients against finite differences, against `higher`, and against hand-written
FOMAML and torch.optim.SGD; BatchNorm policies and buffers; bad inputs. Conv-4 shapes and contract."""
import copy
import warnings

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import functional_call

from kdlab import meta
from kdlab.errors import ParameterError
from kdlab.models.conv4 import Conv4

from ..gradcheck import finite_differences, relative_error

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import higher


# ----------------------------------------------------------------------------------------- helpers

def tiny_mlp(seed=0):
    """4 -> 4 -> 3 with tanh (smooth, so finite differences are clean), float64."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 3)).double()


def mlp_task(seed=1):
    g = torch.Generator().manual_seed(seed)
    x_s = torch.randn(6, 4, generator=g, dtype=torch.float64)
    x_q = torch.randn(9, 4, generator=g, dtype=torch.float64)
    return x_s, torch.arange(6) % 3, x_q, torch.arange(9) % 3


def conv4(dtype=torch.float64, hidden=4, seed=0):
    torch.manual_seed(seed)
    return Conv4(in_channels=1, num_classes=5, hidden=hidden).to(dtype).train()


def episodes(n, dtype=torch.float64, size=16, queries=3, seed=2):
    """`n` 5-way 1-shot tasks of random images."""
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(5, 1, size, size, generator=g, dtype=dtype), torch.arange(5),
             torch.randn(5 * queries, 1, size, size, generator=g, dtype=dtype), torch.arange(5).repeat(queries))
            for _ in range(n)]


def max_abs_diff(a, b):
    return max((x - y).abs().max().item() for x, y in zip(a, b))


def maml_objective(net, task, steps, lr, bn="transductive", first_order=False):
    x_s, y_s, x_q, y_q = task
    fast, _ = meta.inner_loop(net, meta.params_of(net), F.cross_entropy, (x_s, y_s), steps=steps, lr=lr,
                              bn=bn, first_order=first_order)
    return F.cross_entropy(meta.forward(net, fast, x_q, bn=bn, support=x_s), y_q)


def grads_of(net):
    return [p.grad.clone() for p in net.parameters()]


# ------------------------------------------------------------------- meta-gradient vs finite differences

@pytest.mark.parametrize("steps", [1, 3])
def test_meta_gradient_matches_finite_differences(steps):
    net, task = tiny_mlp(), mlp_task()
    params = list(net.parameters())
    analytic = torch.autograd.grad(maml_objective(net, task, steps, 0.5), params)
    numeric = finite_differences(lambda: maml_objective(net, task, steps, 0.5), params)
    assert relative_error(analytic, numeric) <= 1e-4
    # the check can tell second order from first order: FOMAML is far off here
    first_order = torch.autograd.grad(maml_objective(net, task, steps, 0.5, first_order=True), params)
    assert relative_error(first_order, numeric) > 1e-2


def test_learnable_per_parameter_lr_gets_the_right_gradient():
    net, task = tiny_mlp(), mlp_task()
    torch.manual_seed(3)
    lrs = {name: (0.2 + 0.3 * torch.rand_like(p)).requires_grad_() for name, p in net.named_parameters()}
    tensors = list(net.parameters()) + list(lrs.values())
    analytic = torch.autograd.grad(maml_objective(net, task, 2, lrs), tensors)
    numeric = finite_differences(lambda: maml_objective(net, task, 2, lrs), tensors)
    assert all(g.abs().max() > 0 for g in analytic[len(lrs):])
    assert relative_error(analytic, numeric) <= 1e-4


@pytest.mark.parametrize("bn", meta.BN_POLICIES)
def test_meta_gradient_through_batch_norm_matches_finite_differences(bn):
    """A directional derivative on Conv-4 (float64); for "support" the gradient must also flow through
    the support statistics that normalise the query set."""
    net, task = conv4(), episodes(1)[0]
    with torch.no_grad():  # running statistics that differ from any batch's
        net(3 * torch.randn(20, 1, 16, 16, dtype=torch.float64) + 1)
    params = list(net.parameters())
    torch.manual_seed(4)
    direction = [torch.randn_like(p) for p in params]
    analytic = torch.autograd.grad(maml_objective(net, task, 2, 0.3, bn=bn), params)
    along = sum((g * v).sum() for g, v in zip(analytic, direction)).item()

    def shifted(eps):
        with torch.no_grad():
            for p, v in zip(params, direction):
                p.add_(eps * v)
        value = maml_objective(net, task, 2, 0.3, bn=bn).item()
        with torch.no_grad():
            for p, v in zip(params, direction):
                p.sub_(eps * v)
        return value

    numeric = (shifted(1e-6) - shifted(-1e-6)) / 2e-6
    assert abs(along - numeric) <= 1e-4 * abs(numeric)


# ---------------------------------------------------------------------------- torch.func vs higher

def higher_reference(net, tasks, steps, lr, first_order):
    """MAML written directly with higher (its own MAML example's pattern), independent of kdlab.meta."""
    net.zero_grad()
    inner_opt = torch.optim.SGD(net.parameters(), lr=lr)
    for x_s, y_s, x_q, y_q in tasks:
        with higher.innerloop_ctx(net, inner_opt, copy_initial_weights=False,
                                  track_higher_grads=not first_order) as (fnet, diffopt):
            for _ in range(steps):
                diffopt.step(F.cross_entropy(fnet(x_s), y_s))
            query_loss = F.cross_entropy(fnet(x_q), y_q) / len(tasks)
            if first_order:  # higher detached the fast weights: hand their gradient to the initial ones
                for p, g in zip(net.parameters(), torch.autograd.grad(query_loss, fnet.parameters())):
                    p.grad = g if p.grad is None else p.grad + g
            else:
                query_loss.backward()
    return grads_of(net)


@pytest.mark.parametrize("dtype, tolerance", [(torch.float32, 1e-5), (torch.float64, 1e-10)])
@pytest.mark.parametrize("first_order", [False, True])
def test_func_and_higher_backends_agree_on_conv4(dtype, tolerance, first_order):
    net, tasks = conv4(dtype), episodes(2, dtype)
    results = {}
    for backend in meta.BACKENDS:
        net.zero_grad()
        stats = meta.maml_step(net, tasks, steps=2, lr=0.4, first_order=first_order, backend=backend)
        results[backend] = (grads_of(net), stats["loss"])
    reference = higher_reference(net, tasks, 2, 0.4, first_order)
    assert max_abs_diff(results["func"][0], results["higher"][0]) <= tolerance
    assert max_abs_diff(results["func"][0], reference) <= tolerance
    assert abs(results["func"][1] - results["higher"][1]) <= tolerance


def test_backends_agree_with_learnable_per_parameter_lrs():
    net, tasks = conv4(), episodes(1)
    grads = {}
    for backend in meta.BACKENDS:
        net.zero_grad()
        lrs = {name: torch.full_like(p, 0.3, requires_grad=True) for name, p in net.named_parameters()}
        meta.maml_step(net, tasks, steps=2, lr=lrs, backend=backend)
        grads[backend] = grads_of(net) + [v.grad for v in lrs.values()]
    assert max_abs_diff(grads["func"], grads["higher"]) <= 1e-10


# ------------------------------------------------------------------------------ first order, None traps

def test_first_order_equals_fomaml_by_hand():
    """FOMAML by hand: torch.optim.SGD on a copy, then the query gradient at the adapted weights."""
    net, tasks = conv4(), episodes(1)
    x_s, y_s, x_q, y_q = tasks[0]
    by_hand = copy.deepcopy(net)
    sgd = torch.optim.SGD(by_hand.parameters(), lr=0.4)
    for _ in range(3):
        sgd.zero_grad()
        F.cross_entropy(by_hand(x_s), y_s).backward()
        sgd.step()
    sgd.zero_grad()
    F.cross_entropy(by_hand(x_q), y_q).backward()
    net.zero_grad()
    meta.maml_step(net, tasks, steps=3, lr=0.4, first_order=True)
    assert max_abs_diff(grads_of(net), grads_of(by_hand)) <= 1e-12
    net.zero_grad()
    meta.maml_step(net, tasks, steps=3, lr=0.4, first_order=False)
    assert max_abs_diff(grads_of(net), grads_of(by_hand)) > 1e-4  # second order is a different gradient


@pytest.mark.parametrize("first_order", [False, True])
@pytest.mark.parametrize("backend", meta.BACKENDS)
def test_every_initial_parameter_gets_a_nonzero_meta_gradient(backend, first_order):
    net = conv4(torch.float32)
    net.zero_grad()
    meta.maml_step(net, episodes(1, torch.float32), steps=1, lr=0.4, first_order=first_order, backend=backend)
    for name, p in net.named_parameters():
        assert p.grad is not None and p.grad.abs().max() > 0, name


def test_higher_copy_initial_weights_true_gives_no_meta_gradient():
    """The trap kdlab's higher backend avoids: higher's default copies the initial weights off the tape."""
    net = conv4(torch.float32)
    x_s, y_s, x_q, y_q = episodes(1, torch.float32)[0]
    with higher.innerloop_ctx(net, torch.optim.SGD(net.parameters(), lr=0.4)) as (fnet, diffopt):
        diffopt.step(F.cross_entropy(fnet(x_s), y_s))
        F.cross_entropy(fnet(x_q), y_q).backward()
    assert all(p.grad is None for p in net.parameters())


# ------------------------------------------------------------------------------------------ lookahead

def metadistil_quiz_loss(student, teacher, data, create_graph=True):
    """MetaDistil's pilot update: the student takes one KD step towards the (undetached) teacher's
    soft targets, then is scored on a quiz batch."""
    x, x_quiz, y_quiz = data
    params = meta.params_of(student)
    soft_targets = F.softmax(teacher(x) / 2.0, dim=1)
    kd = F.kl_div(F.log_softmax(meta.forward(student, params, x) / 2.0, dim=1), soft_targets,
                  reduction="batchmean") * 4.0
    fast = meta.lookahead(student, params, kd, lr=0.5, create_graph=create_graph)
    return F.cross_entropy(meta.forward(student, fast, x_quiz), y_quiz)


def test_lookahead_teacher_gradient_matches_finite_differences():
    student, teacher = tiny_mlp(0), tiny_mlp(5)
    x, _, x_quiz, y_quiz = mlp_task()
    data = (x, x_quiz, y_quiz)
    outside = list(teacher.parameters())
    analytic = torch.autograd.grad(metadistil_quiz_loss(student, teacher, data), outside)
    numeric = finite_differences(lambda: metadistil_quiz_loss(student, teacher, data), outside)
    assert min(g.abs().max() for g in analytic) > 0
    assert relative_error(analytic, numeric) <= 1e-4


def test_lookahead_first_order_gives_the_teacher_no_gradient():
    """The teacher enters only the inner loss, so its whole meta-gradient is the mixed second
    derivative; with the inner gradient detached, the teacher is not even on the graph."""
    student, teacher = tiny_mlp(0), tiny_mlp(5)
    x, _, x_quiz, y_quiz = mlp_task()
    quiz = metadistil_quiz_loss(student, teacher, (x, x_quiz, y_quiz), create_graph=False)
    assert all(g is None for g in torch.autograd.grad(quiz, list(teacher.parameters()), allow_unused=True))
    assert all(g.abs().max() > 0 for g in torch.autograd.grad(quiz, list(student.parameters())))


# ---------------------------------------------------------------------------------------- unrolled SGD

def weighted_ce(output, y, weights):
    return (weights * F.cross_entropy(output, y, reduction="none")).mean()


def test_unrolled_sgd_follows_torch_optim_sgd():
    net = tiny_mlp()
    g = torch.Generator().manual_seed(6)
    batches = [(torch.randn(5, 4, generator=g, dtype=torch.float64), torch.arange(5) % 3) for _ in range(4)]
    reference = copy.deepcopy(net)
    sgd = torch.optim.SGD(reference.parameters(), lr=0.1, momentum=0.9, weight_decay=0.05)
    for k, (x, y) in enumerate(batches, start=1):
        if k == len(batches):  # continue the optimizer's own trajectory from its momentum buffers
            start, velocity = meta.params_of(reference), meta.momentum_buffers(sgd, reference)
            start = {name: p.detach().clone().requires_grad_() for name, p in start.items()}
            last, _ = meta.unrolled_sgd(reference, start, F.cross_entropy, [(x, y)], lr=0.1, momentum=0.9,
                                        weight_decay=0.05, velocity=velocity)
        sgd.zero_grad()
        F.cross_entropy(reference(x), y).backward()
        sgd.step()
        fast, _ = meta.unrolled_sgd(net, meta.params_of(net), F.cross_entropy, batches[:k], lr=0.1,
                                    momentum=0.9, weight_decay=0.05)
        assert max_abs_diff(list(fast.values()), list(reference.parameters())) <= 1e-12
    assert max_abs_diff(list(last.values()), list(reference.parameters())) <= 1e-12
    plain, _ = meta.unrolled_sgd(net, meta.params_of(net), F.cross_entropy, batches, lr=0.1, weight_decay=0.05)
    assert max_abs_diff(list(plain.values()), list(reference.parameters())) > 1e-3  # momentum mattered


def test_unrolled_sgd_hypergradient_matches_finite_differences():
    """MMKD's pattern: two steps on a loss weighted per sample by meta-weights, one cross-entropy step,
    then a validation loss; the meta-weights' gradient crosses all three momentum steps."""
    net = tiny_mlp()
    g = torch.Generator().manual_seed(7)
    weights = [torch.rand(5, generator=g, dtype=torch.float64).requires_grad_() for _ in range(2)]
    batches = [(torch.randn(5, 4, generator=g, dtype=torch.float64), torch.arange(5) % 3, w) for w in weights]
    batches.append((torch.randn(5, 4, generator=g, dtype=torch.float64), torch.arange(5) % 3))
    x_val, y_val = torch.randn(8, 4, generator=g, dtype=torch.float64), torch.arange(8) % 3

    def validation_loss():
        fast, _ = meta.unrolled_sgd(net, meta.params_of(net), [weighted_ce, weighted_ce, F.cross_entropy],
                                    batches, lr=0.3, momentum=0.9, weight_decay=0.01)
        return F.cross_entropy(meta.forward(net, fast, x_val), y_val)

    analytic = torch.autograd.grad(validation_loss(), weights)
    assert all(g.abs().max() > 0 for g in analytic)
    assert relative_error(analytic, finite_differences(validation_loss, weights)) <= 1e-4


def test_unrolled_sgd_wants_one_loss_per_batch():
    net, (x_s, y_s, _, _) = tiny_mlp(), mlp_task()
    with pytest.raises(ParameterError, match="loss_fn="):
        meta.unrolled_sgd(net, meta.params_of(net), [F.cross_entropy], [(x_s, y_s)] * 2, lr=0.1)


# ------------------------------------------------------------------------------ BatchNorm and buffers

def test_meta_steps_never_change_the_module_buffers():
    net = conv4()
    with torch.no_grad():
        net(torch.randn(10, 1, 16, 16, dtype=torch.float64))
    before = {name: b.clone() for name, b in meta.buffers_of(net).items()}
    tasks = episodes(2)
    for bn in meta.BN_POLICIES:
        meta.maml_step(net, tasks, steps=2, lr=0.4, bn=bn)
        meta.evaluate(net, tasks, steps=2, lr=0.4, bn=bn)
    meta.maml_step(net, tasks, steps=2, lr=0.4, backend="higher")
    meta.unrolled_sgd(net, meta.params_of(net), F.cross_entropy, [tasks[0][:2]], lr=0.1, momentum=0.9)
    assert all(torch.equal(before[name], b) for name, b in meta.buffers_of(net).items())
    assert net.training and all(m.training for _, m in meta.batch_norms(net))
    # the failure guarded against: a plain functional call in train mode writes the running statistics
    functional_call(net, meta.params_of(net), (tasks[0][0],))
    assert not torch.equal(before["stem.1.running_mean"], net.stem[1].running_mean)


def test_preserved_buffers_restores_after_a_direct_forward():
    net = conv4()
    before = {name: b.clone() for name, b in meta.buffers_of(net).items()}
    with meta.preserved_buffers(net):
        net(torch.randn(4, 1, 16, 16, dtype=torch.float64))
        assert not torch.equal(before["stem.1.running_var"], net.stem[1].running_var)
    assert all(torch.equal(before[name], b) for name, b in meta.buffers_of(net).items())


def support_statistics_by_hand(net, x_support, x_query):
    """Each BatchNorm of a copy set, layer by layer, to the support activations' batch statistics."""
    oracle = copy.deepcopy(net).eval()
    h = x_support
    with torch.no_grad():
        for block in [oracle.stem, *oracle.stages]:
            conv, bn = block[0], block[1]
            a = conv(h)
            bn.running_mean.copy_(a.mean((0, 2, 3)))
            bn.running_var.copy_(a.var((0, 2, 3), unbiased=False))
            h = block(h)
        return oracle(x_query)


def test_batch_norm_policies_give_the_statistics_they_promise():
    net = conv4()
    with torch.no_grad():
        net(2 * torch.randn(30, 1, 16, 16, dtype=torch.float64) + 1)
    x_s, _, x_q, _ = episodes(1)[0]
    x_q = 3 * x_q - 1  # a query set whose statistics differ from the support set's
    params = meta.params_of(net)
    with torch.no_grad():
        transductive = meta.forward(net, params, x_q, bn="transductive")
        support = meta.forward(net, params, x_q, bn="support", support=x_s)
        running = meta.forward(net, params, x_q, bn="running")
        assert torch.allclose(transductive, copy.deepcopy(net).train()(x_q), atol=1e-12)
        assert torch.allclose(running, copy.deepcopy(net).eval()(x_q), atol=1e-12)
        assert torch.allclose(support, support_statistics_by_hand(net, x_s, x_q), atol=1e-10)
        assert torch.allclose(meta.forward(net, params, x_q, bn="support"), transductive, atol=1e-12)
    for a, b in ((transductive, support), (transductive, running), (support, running)):
        assert (a - b).abs().max() > 1e-3


# ------------------------------------------------------------------------------------------ the basics

def test_zero_steps_return_the_initial_parameters():
    net, (x_s, y_s, _, _) = tiny_mlp(), mlp_task()
    params = meta.params_of(net)
    for backend in meta.BACKENDS:
        fast, losses = meta.inner_loop(net, params, F.cross_entropy, (x_s, y_s), steps=0, lr=0.1, backend=backend)
        assert all(fast[name] is p for name, p in params.items()) and losses.numel() == 0


def test_inner_loop_returns_one_detached_loss_per_step_and_lowers_it():
    net, (x_s, y_s, _, _) = tiny_mlp(), mlp_task()
    _, losses = meta.inner_loop(net, meta.params_of(net), F.cross_entropy, (x_s, y_s), steps=5, lr=0.5)
    assert losses.shape == (5,) and not losses.requires_grad and losses[-1] < losses[0]


def test_adapt_and_predict_leaves_no_graph_and_no_gradient():
    net, tasks = conv4(), episodes(1)
    x_s, y_s, x_q, _ = tasks[0]
    logits = meta.adapt_and_predict(net, (x_s, y_s), x_q, steps=2, lr=0.4)
    assert logits.shape == (15, 5) and not logits.requires_grad
    assert all(p.grad is None for p in net.parameters())


@pytest.mark.parametrize("kwargs, name", [
    ({"steps": -1}, "steps"), ({"steps": 1.5}, "steps"), ({"bn": "batch"}, "bn"),
    ({"backend": "jax"}, "backend"), ({"lr": -0.1}, "lr"), ({"lr": {"0.weight": torch.tensor(0.1)}}, "lr"),
])
def test_bad_inner_loop_arguments_name_the_parameter(kwargs, name):
    net, (x_s, y_s, _, _) = tiny_mlp(), mlp_task()
    arguments = {"steps": 1, "lr": 0.1, **kwargs}
    with pytest.raises(ParameterError) as error:
        meta.inner_loop(net, meta.params_of(net), F.cross_entropy, (x_s, y_s), **arguments)
    assert error.value.name == name and f"{name}=" in str(error.value) and "must be" in str(error.value)


def test_bad_bn_message_lists_the_policies():
    with pytest.raises(ParameterError, match="'transductive', 'support', 'running'"):
        meta.forward(tiny_mlp(), {}, torch.zeros(1, 4, dtype=torch.float64), bn="tbn")


def test_higher_backend_refuses_parameters_that_are_not_the_module_s():
    net, (x_s, y_s, _, _) = tiny_mlp(), mlp_task()
    detached = {name: p.detach().clone().requires_grad_() for name, p in meta.params_of(net).items()}
    with pytest.raises(ParameterError, match="params="):
        meta.inner_loop(net, detached, F.cross_entropy, (x_s, y_s), steps=1, lr=0.1, backend="higher")


# ----------------------------------------------------------------------------------------------- Conv-4

@pytest.mark.parametrize("variant, channels, size, hidden, pooled", [
    ("omniglot", 1, 28, 64, 64), ("omniglot", 1, 16, 8, 8),
    ("miniimagenet", 3, 84, 32, 800), ("miniimagenet", 1, 16, 8, 8),
])
def test_conv4_shapes_and_feature_contract(variant, channels, size, hidden, pooled):
    net = Conv4(channels, 5, hidden, variant, image_size=size)
    logits, features = net(torch.zeros(2, channels, size, size), return_features=True)
    assert logits.shape == (2, 5) and len(features) == 5 and net.num_classes == 5
    assert features[-1].shape == (2, pooled) and features[-2].dim() == 4
    assert [f.shape[1] for f in features] == net.feature_channels
    assert torch.equal(net(torch.zeros(2, channels, size, size)), logits)


@pytest.mark.parametrize("kwargs, name", [
    ({"variant": "resnet"}, "variant"), ({"norm": "instance"}, "norm"), ({"hidden": 0}, "hidden"),
    ({"variant": "miniimagenet", "image_size": 8}, "image_size"),
])
def test_conv4_bad_arguments(kwargs, name):
    with pytest.raises(ParameterError) as error:
        Conv4(**kwargs)
    assert error.value.name == name


def test_conv4_miniimagenet_names_the_expected_image_size():
    with pytest.raises(ParameterError, match="84x84"):
        Conv4(3, 5, 32, "miniimagenet")(torch.zeros(1, 3, 32, 32))


# ------------------------------------------------------------------------- bn="running" and its statistics

def test_running_policy_warns_when_the_statistics_were_never_updated():
    """Meta-training through kdlab.meta leaves PyTorch's initial statistics: bn="running" says so, once per call."""
    from kdlab.errors import RunningStatisticsWarning

    net, tasks = conv4(), episodes(2)
    meta.maml_step(net, tasks, steps=1, lr=0.4)
    assert meta.unusable_running_statistics(net)[0] == [name for name, _ in meta.batch_norms(net)]
    with pytest.warns(RunningStatisticsWarning, match=r"never updated .*mean 0 and variance 1.*bn='transductive'"):
        meta.forward(net, meta.params_of(net), tasks[0][2], bn="running")
    with warnings.catch_warnings():
        warnings.simplefilter("error", RunningStatisticsWarning)  # the documented way to make it a refusal
        with pytest.raises(RunningStatisticsWarning):
            meta.evaluate(net, tasks, steps=1, lr=0.4, bn="running")


def test_running_policy_is_silent_once_the_statistics_describe_data():
    """The planted-bug side: the check must not fire on updated or loaded statistics, nor for other policies."""
    from kdlab.errors import RunningStatisticsWarning

    net, tasks = conv4(), episodes(1)
    fresh = copy.deepcopy(net)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RunningStatisticsWarning)
        for policy in ("transductive", "support"):
            meta.forward(fresh, meta.params_of(fresh), tasks[0][2], bn=policy)
        with torch.no_grad():
            net(tasks[0][0])  # one forward pass in train mode updates the running statistics
        meta.forward(net, meta.params_of(net), tasks[0][2], bn="running")
        loaded = copy.deepcopy(fresh)
        loaded.load_state_dict({**net.state_dict(), **{k: torch.zeros_like(v) for k, v in net.state_dict().items()
                                                       if k.endswith("num_batches_tracked")}})
        meta.forward(loaded, meta.params_of(loaded), tasks[0][2], bn="running")  # loaded, 0 batches tracked
    assert meta.unusable_running_statistics(net) == ([], [])


def test_running_policy_warns_when_batch_norm_keeps_no_statistics():
    from kdlab.errors import RunningStatisticsWarning

    net = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3, track_running_stats=False)).double()
    assert meta.unusable_running_statistics(net) == ([], ["1"])
    with pytest.warns(RunningStatisticsWarning, match=r"do not keep \(track_running_stats=False\)"):
        meta.forward(net, meta.params_of(net), torch.randn(5, 4, dtype=torch.float64), bn="running")


# ------------------------------------------------------------------------ the walk over submodules

def test_structure_finds_batch_norms_and_ties_as_the_separate_walks_do():
    torch.manual_seed(0)
    shared = nn.Linear(3, 3)
    plain = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3), nn.ReLU(), nn.Linear(3, 2), nn.BatchNorm1d(2))
    tied = nn.Sequential(shared, nn.BatchNorm1d(3), nn.Tanh(), nn.Linear(3, 3))
    tied[3].weight = shared.weight
    for module, has_tie in ((plain, False), (tied, True), (Conv4(in_channels=1, num_classes=5, hidden=4), False)):
        layers, tie = meta.functional._structure(module)
        assert [name for name, _ in layers] == [name for name, _ in meta.batch_norms(module)]
        assert tie is has_tie
        assert tie == (sum(1 for _ in module.named_parameters(remove_duplicate=False))
                       != sum(1 for _ in module.parameters()))


def test_forward_keeps_a_tied_weight_tied():
    """Two Linear layers holding one weight (as a tied embedding and output layer): the fast weight, given
    under the first name only, must replace both uses (functional_call's tie_weights)."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 3), nn.Tanh(), nn.Linear(3, 3))
    net[2].weight = net[0].weight
    x = torch.randn(5, 3)
    fast = {name: p.detach() + 0.5 for name, p in meta.params_of(net).items()}
    assert set(fast) == {"0.weight", "0.bias", "2.bias"}
    w = fast["0.weight"]
    expected = F.linear(torch.tanh(F.linear(x, w, fast["0.bias"])), w, fast["2.bias"])
    assert torch.allclose(meta.forward(net, fast, x), expected)
