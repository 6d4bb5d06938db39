"""Notebook 08 on the method registry: every contender is a registered method with a complete card, built by
`kdlab.benchmark.contender`, trained by `fit` through its own `step`, and timed by calling that same step
(with and without its meta step, at the run positions where the method takes it); the few-shot block runs
TSMD through `fit_episodes`; `kdlab methods` prints the cards; bad inputs are refused with one message."""
import dataclasses
import math
import re
from unittest import mock

import pytest
import torch

from kdlab import benchmark as B
from kdlab import cli
from kdlab import scoreboard as S
from kdlab.data.fewshot_base import FewShotDataset
from kdlab.errors import ParameterError
from kdlab.lessons import comparison as C
from kdlab.methods import registry
from kdlab.methods.base import Method
from kdlab.profiling import StepCost

TINY_TEACHERS = {name: {**spec, "epochs": 1} for name, spec in B.TEACHER_SPECS.items()}


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    return B.load_benchmark(B.Budget(epochs=1), student_width=2, teacher_specs=TINY_TEACHERS, root=root,
                            log=lambda *_: None)


def state(method):
    """Every tensor of every module the method trains, copied."""
    return {f"{i}.{k}": v.detach().clone() for i, m in enumerate(method.modules()) for k, v in m.state_dict().items()}


# ---------------------------------------------------------------------------------- the registry and its cards

def test_every_contender_and_card_row_is_a_registered_method():
    for name, entry in B.CONTENDERS.items():
        cls = registry.get(entry.method)
        assert issubclass(cls, Method) and entry.method in registry.names(), name
    for label, (name, measured) in C.CARD_ROWS.items():
        assert name in registry.names(), label
        assert measured is None or measured in C.COST_METHODS, label


def test_a_method_missing_from_the_registry_is_caught():
    without = {k: v for k, v in registry.METHODS.items() if k != "mmkd"}
    with mock.patch.dict(registry.METHODS, without, clear=True):
        with pytest.raises(ParameterError, match="method"):
            S.missing_fields({"MMKD": "mmkd"})


def test_every_card_is_complete_and_an_empty_field_is_found():
    assert S.missing_fields({label: name for label, (name, _) in C.CARD_ROWS.items()}) == []
    assert set(registry.CARD_FIELDS) == {"paper", "equations", "detached", "order", "loop"}
    broken = {**registry.card("kd"), "detached": "  "}
    del broken["order"]
    with mock.patch.object(registry.get("kd"), "card", broken):
        assert S.missing_fields({"KD": "kd"}) == [("KD", "detached"), ("KD", "order")]


def test_cards_render_as_one_table_with_the_measured_cost():
    costs = {"KD": {"cost": StepCost(0.010, 1000)}, "MetaDistil": {"cost": StepCost(0.040, 3000)},
             "MetaDistiller": {"cost": StepCost(0.020, 2000)}, "MMKD": {"cost": StepCost(0.025, 5000)},
             "FD + adaptation": {"cost": StepCost(0.050, 1500)}}
    text = S.cards_markdown(C.CARD_ROWS, costs, extra_costs={"TSMD (few-shot block)": "2.0x per meta-iteration"})
    lines = text.splitlines()
    assert len(lines) == 2 + len(C.CARD_ROWS)
    cells = [re.split(r"(?<!\\)\|", line) for line in lines]   # an escaped pipe stays inside its cell
    assert all(len(row) == len(registry.CARD_FIELDS) + 4 for row in cells), "a cell text broke the table"
    with mock.patch.object(registry.get("kd"), "card", {**registry.card("kd"), "equations": "KL(p || q)"}):
        assert "KL(p \\|\\| q)" in S.cards_markdown({"KD": ("kd", None)}), "a pipe in a card must be escaped"
    assert "4.0x time, 3.0x peak memory per step" in text          # MetaDistil over KD
    assert "1.0x time, 1.0x peak memory per step" in text          # the KD card against itself
    assert "2.0x per meta-iteration" in text
    assert registry.card("metadistil")["paper"] in text, "the card must come from the registry"


def test_the_cli_prints_every_card(capsys):
    assert cli.main(["methods"]) == 0
    out = capsys.readouterr().out
    for name in registry.names():
        assert f"\n{name}\n" in f"\n{out}\n", name
    assert out.count("  paper ") == out.count("  loop ") == len(registry.names())
    assert cli.main(["methods", "kd"]) == 0 and capsys.readouterr().out.startswith("kd\n  paper")
    assert cli.main(["methods", "magic-kd"]) == 2


# ---------------------------------------------------------------------------------------------- the methods

@pytest.mark.parametrize("name", B.METHODS)
def test_every_method_is_built_by_the_registry_and_trained_through_its_own_step(bench, name):
    cls = registry.get(B.CONTENDERS[name].method)
    assert type(B.contender(bench, name, 0)) is cls
    with mock.patch.object(cls, "step", autospec=True, side_effect=cls.step) as step:
        result = C.run_method(bench, name, seed=0)
    assert step.call_count == result["steps"] > 0, "fit must call the method's own step once per training step"
    assert 0.0 <= result["acc"] <= 100.0 and math.isfinite(result["acc"])
    assert result["seconds"] > 0 and result["seconds_per_step"] > 0
    assert set(C.EXTRAS.get(name, {})) <= set(result)


def test_same_seed_gives_the_same_number_and_a_different_seed_another(bench):
    for name in B.METHODS:
        first = C.run_method(bench, name, seed=3)["acc"]
        assert C.run_method(bench, name, seed=3)["acc"] == first, f"{name} is not reproducible"
    budget = dataclasses.replace(bench.budget, epochs=3)
    assert C.run_method(bench, "CE", 1, budget)["acc"] != C.run_method(bench, "CE", 2, budget)["acc"]


def test_every_method_starts_from_the_same_student(bench):
    a, b = B.new_student(bench, 5), B.new_multi_exit(bench, 5)
    for (name, p), q in zip(a.named_parameters(), b.backbone.parameters()):
        assert torch.equal(p, q), name
    for name in B.METHODS:
        method = B.contender(bench, name, 5)
        model = method.student if getattr(method, "student", None) is not None else method.model
        first = next(iter(model.parameters()))
        assert torch.equal(first, next(iter(a.parameters()))), name
    teacher = B.contender(bench, "MetaDistil", 0).teacher
    assert teacher is not bench.teacher, "MetaDistil trains its teacher: it must get a copy"


def test_kd_90_trains_on_exactly_the_images_metadistil_keeps(bench):
    method = B.contender(bench, "MetaDistil", 0)
    run = bench.budget.run(0)
    method.configure(run.recipe, run)
    kept = method.prepare(bench.data, run)
    data = B.training_data(bench, "KD (90 %)", 0)
    assert data.num_train == kept.num_train == 270 and torch.equal(data.x_train, kept.x_train)
    assert B.training_data(bench, "KD", 0) is bench.data
    steps = [C.run_method(bench, name, 0)["steps"] for name in ("KD", "KD (90 %)", "MetaDistil")]
    assert steps[1] == steps[2] == math.ceil(270 / bench.budget.batch_size)


def test_settings_of_the_benchmark_are_used(bench):
    settings = B.with_kd_settings(B.SETTINGS, 0.0, 2.0)
    assert settings["MetaDistil"]["alpha"] == 0.0 and settings["KD (90 %)"]["temperature"] == 2.0
    assert B.SETTINGS["KD"]["alpha"] == 0.9, "the module defaults must not change"
    assert B.contender(dataclasses.replace(bench, settings=settings), "MetaDistil", 0).temperature == 2.0
    tiny = dataclasses.replace(bench, settings=settings)
    ce = C.run_method(bench, "CE", 0)["acc"]
    assert C.run_method(tiny, "KD", 0)["acc"] == ce, "KD with ALPHA = 0 is CE from the same start"


# ------------------------------------------------------------------------------------------------ costs

def test_step_costs_amortise_the_meta_step(bench):
    costs = C.step_costs(bench, ("KD", "MMKD"), repeats=1, warmup=0)
    parts = costs["MMKD"]["components"]
    assert len(parts) == 2 and sorted(share for _, share in parts.values()) == pytest.approx([0.2, 0.8])
    expected = sum(c.seconds * share for c, share in parts.values())
    assert costs["MMKD"]["cost"].seconds == pytest.approx(expected)
    assert costs["MMKD"]["cost"].peak_bytes == max(c.peak_bytes for c, _ in parts.values()) > 0
    table = S.comparison_table({f"{m}/acc": [90.0, 91.0] for m in ("KD", "MMKD", "KD (90 %)")}, costs,
                               methods=("KD", "KD (90 %)", "MMKD"))
    assert table.count("\n") == 4 and "(baseline)" in table


def test_rounds_keep_the_fastest_time_and_profile_the_memory_once(bench, monkeypatch):
    calls = []

    def fake_step_cost(fn, *, repeats, warmup, device, peak):
        calls.append(peak)
        return StepCost(1.0 / len(calls), 1000 + len(calls) if peak else None)

    monkeypatch.setattr(C, "step_cost", fake_step_cost)
    costs = C.step_costs(bench, ("KD",), rounds=3)
    assert calls == [True, False, False], "the memory is profiled in the first round only"
    assert costs["KD"]["cost"] == StepCost(1.0 / 3, 1001), "the fastest round's time, the first round's memory"


def test_every_method_times_its_own_step(bench):
    for name in C.COST_METHODS:
        parts = C.step_components(bench, name)
        assert parts and math.isclose(sum(share for _, _, share in parts), 1.0)
        for _, fn, _ in parts:
            cls = registry.get(B.CONTENDERS[name].method)
            assert getattr(fn.func, "__func__", None) is cls.step, f"{name}: the timed step must be the method's own"
            losses = fn()  # one real step each: it must run on the benchmark's batch
            assert math.isfinite(float(losses["loss"]))


@pytest.mark.parametrize("name", sorted(C.META_SCHEDULES))
def test_the_meta_phase_takes_the_meta_step_and_the_other_does_not(bench, name):
    settings = {**bench.settings, "FD + adaptation": {**bench.settings["FD + adaptation"], "meta_every": 2}}
    bench = dataclasses.replace(bench, settings=settings)
    budget = dataclasses.replace(bench.budget, epochs=10)   # MetaDistiller: 2 meta epochs of 10
    (_, with_meta, share), (_, without, rest) = C.step_components(bench, name, budget=budget)
    assert 0 < share < 1 and share + rest == pytest.approx(1.0)
    meta = {"MMKD": "nets", "MetaDistiller": "generator"}.get(name)   # the meta-learned module, if separate
    snap = lambda fn: [p.detach().clone() for p in getattr(fn.func.__self__, meta).parameters()]  # noqa: E731
    moved = lambda fn, old: any(not torch.equal(p, q) for p, q in zip(snap(fn), old))  # noqa: E731
    before = state(with_meta.func.__self__)
    assert all(torch.equal(before[k], v) for k, v in state(without.func.__self__).items()), "not the same start"
    start = (snap(with_meta), snap(without)) if meta else None
    with_meta()
    without()
    after_with, after_without = state(with_meta.func.__self__), state(without.func.__self__)
    assert any(not torch.equal(after_with[k], after_without[k]) for k in before), \
        f"{name}: the step at the meta position did exactly what the ordinary step did"
    if meta:
        assert moved(with_meta, start[0]) and not moved(without, start[1]), f"{name}: {meta} moved in the wrong phase"


# ------------------------------------------------------------------------------------- the few-shot block

def tiny_fewshot(size=12, per_class=4):
    g = torch.Generator().manual_seed(0)
    classes = 15
    images = torch.rand(classes * per_class, 1, size, size, generator=g)
    labels = torch.arange(classes).repeat_interleave(per_class)
    return FewShotDataset("tiny", images, labels, [str(c) for c in range(classes)], ["a"] * classes,
                          {"train": list(range(5)), "val": list(range(5, 10)), "test": list(range(10, 15))})


def test_fewshot_block_runs_tsmd_from_the_registry_and_scores_every_row():
    from kdlab.data.episodes import EpisodeSampler

    data = tiny_fewshot()
    sampler = EpisodeSampler(data, "test", ways=5, shots=1, queries=2, seed=1)
    tasks = [tuple(sampler.episode(i)) for i in range(3)]
    tsmd, built = registry.get("tsmd"), {}
    init = tsmd.__init__

    def spy(self, teacher, student, **knobs):   # what each row starts from
        copy = lambda m: None if m is None else {k: v.clone() for k, v in m.state_dict().items()}  # noqa: E731
        built[knobs["variant"]] = (self, copy(teacher), copy(student))
        init(self, teacher, student, **knobs)

    with mock.patch.object(tsmd, "step", autospec=True, side_effect=tsmd.step) as step, \
            mock.patch.object(tsmd, "__init__", spy):
        out = C.fewshot_seed(data, 0, test_tasks=tasks, queries=2, iterations=2, teacher_hidden=4, student_hidden=2)
    assert step.call_count == 2 * len(C.FEWSHOT_ROWS)
    assert {call.args[0].settings.variant for call in step.call_args_list} == set(C.FEWSHOT_ROWS)
    oracle_after = built["oracle"][0].teacher.state_dict()
    assert built["student"][1] is None and built["oracle"][2] is None, "a row got a model it does not train"
    assert all(torch.equal(oracle_after[k], v) for k, v in built["ours"][1].items()), \
        "TSMD's teacher must start from the meta-trained oracle (notebook 06's protocol)"
    assert all(torch.equal(built["student"][2][k], v) for k, v in built["ours"][2].items()), "not the same student"
    for row in C.FEWSHOT_ROWS:
        assert len(out[row]) == 3 and all(0 <= a <= 100 for a in out[row])
        assert out[row + "/seconds"] > 0
    again = C.fewshot_seed(data, 0, test_tasks=tasks, queries=2, iterations=2, teacher_hidden=4, student_hidden=2)
    assert again["ours"] == out["ours"], "the few-shot block is not reproducible"
    assert "(baseline)" in S.fewshot_table({row: [out[row], again[row]] for row in C.FEWSHOT_ROWS},
                                           C.FEWSHOT_NAMES, "student")
    costs = C.fewshot_step_costs(data, queries=2, teacher_hidden=4, student_hidden=2, repeats=1, warmup=0)
    assert set(costs) == set(C.FEWSHOT_ROWS) and all(c.seconds > 0 and c.peak_bytes > 0 for c in costs.values())


def test_the_few_shot_seeds_in_workers_equal_each_seed_in_one_process():
    from kdlab.data.episodes import EpisodeSampler

    data = tiny_fewshot()
    sampler = EpisodeSampler(data, "test", ways=5, shots=1, queries=2, seed=1)
    tasks = [tuple(sampler.episode(i)) for i in range(3)]
    knobs = dict(test_tasks=tasks, queries=2, iterations=2, teacher_hidden=4, student_hidden=2)
    split = C.fewshot_seeds(data, [0, 1], workers=2, **knobs)   # each seed as two runs: oracle + TSMD, student
    for seed, theirs in zip([0, 1], split):
        whole = C.fewshot_seed(data, seed, **knobs)
        assert theirs.keys() == whole.keys()
        for row in C.FEWSHOT_ROWS:
            assert theirs[row] == whole[row], (seed, row)
    assert split[0]["ours"] != split[1]["ours"] or split[0]["oracle"] != split[1]["oracle"], "seeds not distinct"
    with pytest.raises(ParameterError, match="'oracle' wherever 'ours'"):
        C.fewshot_seed(data, 0, rows=("ours",), **knobs)


def test_only_the_kd_row_gets_the_kd_knobs():
    assert "kd_weight" in B.fewshot_knobs("ours") and "kd_weight" not in B.fewshot_knobs("student")
    assert B.fewshot_knobs("oracle", {"inner_lr": 0.1})["inner_lr"] == 0.1


# -------------------------------------------------------------------------------------------- bad inputs

def test_an_unknown_method_is_refused(bench):
    with pytest.raises(ParameterError, match="method"):
        C.run_method(bench, "Magic KD", 0)


def test_a_budget_with_another_optimizer_is_refused():
    with pytest.raises(ParameterError, match="optimizer"):
        B.Budget(optimizer="adam")


def test_a_budget_with_zero_epochs_is_refused():
    with pytest.raises(ParameterError, match="EPOCHS"):
        B.Budget(epochs=0)


def test_a_negative_seed_and_zero_rounds_are_refused(bench):
    with pytest.raises(ParameterError, match="SEED"):
        C.run_method(bench, "CE", -1)
    with pytest.raises(ParameterError, match="COST_ROUNDS"):
        C.step_costs(bench, ("KD",), rounds=0)


def test_the_panel_refuses_a_bad_temperature_and_runs_a_good_one(bench):
    panel = C.method_panel(bench, epochs=1, method="KD")
    with pytest.raises(ParameterError, match="TEMPERATURE"):
        panel.set(TEMPERATURE=0.0)
    data = panel.set(METHOD="MetaDistiller", ALPHA=0.5, TEMPERATURE=2.0)
    assert data["overrides"] == {"alpha": 0.5, "temperature": 2.0} and 0 <= data["acc"] <= 100
    assert C.quick_run(bench, "CE", seed=0, epochs=1, alpha=0.3)["overrides"] == {}
