"""kdlab.lessons.comparison: the method-card schema is complete, every method runs a tiny budget end to end
on the common benchmark with a sane accuracy, the same seed gives the same number, the step costs are
amortised as documented, the few-shot block runs, and bad inputs are refused with one clear message."""
import dataclasses
import math

import pytest
import torch

from kdlab.data.fewshot_base import FewShotDataset
from kdlab.errors import ParameterError
from kdlab.lessons import comparison as C
from kdlab.profiling import StepCost

TINY_TEACHERS = {name: {**spec, "epochs": 1} for name, spec in C.TEACHER_SPECS.items()}


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    return C.load_benchmark(C.Budget(epochs=1), student_width=2, teacher_specs=TINY_TEACHERS, root=root,
                            log=lambda *_: None)


# ------------------------------------------------------------------------------------------- the cards

def test_every_paper_has_a_card_and_every_field_is_filled():
    assert C.missing_fields() == []
    methods = {card.method for card in C.CARDS}
    for name in ("MetaDistil", "MetaDistiller", "MMKD", "FD + adaptation"):
        assert name in methods, f"no card for {name}"
    assert any(m.startswith("TSMD") for m in methods) and any(m.startswith("KD") for m in methods)
    assert C.CARD_FIELDS == ("method", "paper", "meta_learned", "inner_loop", "outer_objective", "data_split",
                             "detached", "cost_vs_kd")


def test_missing_fields_finds_an_empty_field():
    broken = dataclasses.replace(C.CARDS[1], inner_loop="  ")
    assert C.missing_fields([broken]) == [(broken.method, "inner_loop")]


def test_cards_render_as_one_table_with_the_measured_cost():
    costs = {"KD": {"cost": StepCost(0.010, 1000)}, "MetaDistil": {"cost": StepCost(0.040, 3000)},
             "MetaDistiller": {"cost": StepCost(0.020, 2000)}, "MMKD": {"cost": StepCost(0.025, 5000)},
             "FD + adaptation": {"cost": StepCost(0.050, 1500)}}
    text = C.cards_markdown(C.CARDS, costs, extra_costs={"TSMD (few-shot block)": "2.0x per meta-iteration"})
    lines = text.splitlines()
    assert len(lines) == 2 + len(C.CARDS)
    assert all(line.count("|") == len(C.CARD_FIELDS) + 1 for line in lines), "a cell text broke the table"
    assert "4.0x time, 3.0x peak memory per step" in text          # MetaDistil over KD
    assert "1.0x time, 1.0x peak memory per step" in text          # the KD card against itself
    assert "2.0x per meta-iteration" in text


# ---------------------------------------------------------------------------------------- the methods

@pytest.mark.parametrize("name", C.METHODS)
def test_every_method_runs_a_tiny_budget_end_to_end(bench, name):
    result = C.run_method(bench, name, seed=0)
    assert 0.0 <= result["acc"] <= 100.0 and math.isfinite(result["acc"])
    assert result["steps"] > 0 and result["seconds"] > 0 and result["seconds_per_step"] > 0


def test_same_seed_gives_the_same_number_and_a_different_seed_another(bench):
    for name in C.METHODS:
        first = C.run_method(bench, name, seed=3)["acc"]
        assert C.run_method(bench, name, seed=3)["acc"] == first, f"{name} is not reproducible"
    budget = dataclasses.replace(bench.budget, epochs=3)
    assert C.run_method(bench, "CE", 1, budget)["acc"] != C.run_method(bench, "CE", 2, budget)["acc"]


def test_every_method_starts_from_the_same_student(bench):
    a, b = C.new_student(bench, 5), C.new_multi_exit(bench, 5)
    for (name, p), q in zip(a.named_parameters(), b.backbone.parameters()):
        assert torch.equal(p, q), name


def test_kd_90_trains_on_the_images_metadistil_keeps(bench):
    steps_kd = C.run_method(bench, "KD", 0)["steps"]
    steps_90 = C.run_method(bench, "KD (90 %)", 0)["steps"]
    steps_meta = C.run_method(bench, "MetaDistil", 0)["steps"]
    assert steps_90 == steps_meta == math.ceil(270 / bench.budget.batch_size) < steps_kd + 1


def test_settings_of_the_benchmark_are_used(bench):
    settings = C.with_kd_settings(C.SETTINGS, 0.0, 2.0)
    assert settings["MetaDistil"]["alpha"] == 0.0 and settings["KD (90 %)"]["temperature"] == 2.0
    assert C.SETTINGS["KD"]["alpha"] == 0.9, "the module defaults must not change"
    tiny = dataclasses.replace(bench, settings=settings)
    ce = C.run_method(bench, "CE", 0)["acc"]
    assert C.run_method(tiny, "KD", 0)["acc"] == ce, "KD with ALPHA = 0 is CE from the same start"


# ------------------------------------------------------------------------------------------------ costs

def test_step_costs_amortise_the_meta_step(bench):
    costs = C.step_costs(bench, ("KD", "MMKD"), repeats=1, warmup=0)
    parts = costs["MMKD"]["components"]
    assert len(parts) == 2 and sorted(share for _, share in parts.values()) == [0.2, 1.0]
    expected = sum(c.seconds * share for c, share in parts.values())
    assert costs["MMKD"]["cost"].seconds == pytest.approx(expected)
    assert costs["MMKD"]["cost"].peak_bytes == max(c.peak_bytes for c, _ in parts.values()) > 0
    table = C.comparison_table({f"{m}/acc": [90.0, 91.0] for m in ("KD", "MMKD", "KD (90 %)")}, costs,
                               methods=("KD", "KD (90 %)", "MMKD"))
    assert table.count("\n") == 4 and "(baseline)" in table


def test_every_method_has_a_step_to_time(bench):
    for name in C.COST_METHODS:
        parts = C.step_components(bench, name)
        assert parts and all(callable(fn) and 0 < share <= 1 for _, fn, share in parts)
        for _, fn, _ in parts:
            fn()  # one real step each: it must run on the benchmark's batch


# ------------------------------------------------------------------------------------- the few-shot block

def tiny_fewshot(size=12, per_class=4):
    g = torch.Generator().manual_seed(0)
    classes = 15
    images = torch.rand(classes * per_class, 1, size, size, generator=g)
    labels = torch.arange(classes).repeat_interleave(per_class)
    return FewShotDataset("tiny", images, labels, [str(c) for c in range(classes)], ["a"] * classes,
                          {"train": list(range(5)), "val": list(range(5, 10)), "test": list(range(10, 15))})


def test_fewshot_block_runs_and_scores_every_row():
    from kdlab.data.episodes import EpisodeSampler

    data = tiny_fewshot()
    sampler = EpisodeSampler(data, "test", ways=5, shots=1, queries=2, seed=1)
    tasks = [tuple(sampler.episode(i)) for i in range(3)]
    out = C.fewshot_seed(data, 0, test_tasks=tasks, queries=2, iterations=2, teacher_hidden=4, student_hidden=2)
    for row in C.FEWSHOT_ROWS:
        assert len(out[row]) == 3 and all(0 <= a <= 100 for a in out[row])
        assert out[row + "/seconds"] > 0
    again = C.fewshot_seed(data, 0, test_tasks=tasks, queries=2, iterations=2, teacher_hidden=4, student_hidden=2)
    assert again["ours"] == out["ours"], "the few-shot block is not reproducible"
    assert "(baseline)" in C.fewshot_table({row: [out[row], again[row]] for row in C.FEWSHOT_ROWS})


# -------------------------------------------------------------------------------------------- bad inputs

def test_an_unknown_method_is_refused(bench):
    with pytest.raises(ParameterError, match="method"):
        C.run_method(bench, "Magic KD", 0)


def test_a_budget_with_another_optimizer_is_refused():
    with pytest.raises(ParameterError, match="optimizer"):
        C.Budget(optimizer="adam")


def test_a_budget_with_zero_epochs_is_refused():
    with pytest.raises(ParameterError, match="EPOCHS"):
        C.Budget(epochs=0)


def test_a_negative_seed_is_refused(bench):
    with pytest.raises(ParameterError, match="SEED"):
        C.run_method(bench, "CE", -1)


def test_the_panel_refuses_a_bad_temperature_and_runs_a_good_one(bench):
    panel = C.method_panel(bench, epochs=1, method="KD")
    with pytest.raises(ParameterError, match="TEMPERATURE"):
        panel.set(TEMPERATURE=0.0)
    data = panel.set(METHOD="MMKD", ALPHA=0.5, TEMPERATURE=2.0)
    assert data["overrides"] == {"alpha": 0.5, "temperature": 2.0} and 0 <= data["acc"] <= 100
    assert C.quick_run(bench, "CE", seed=0, epochs=1, alpha=0.3)["overrides"] == {}
