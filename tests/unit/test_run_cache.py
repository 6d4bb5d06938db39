"""kdlab.run_cache: digests that see every bit, a cache that computes once per configuration and code, and
notebook 08's few-shot rows read from notebook 06's runs (the same results as computing them)."""
import pytest
import torch

from kdlab import benchmark, run_cache
from kdlab.data.episodes import EpisodeSampler
from kdlab.lessons import comparison, tsmd_rows
from kdlab.lessons import tsmd as tsmd_lesson

from .test_comparison import tiny_fewshot


@pytest.fixture
def cache_on(monkeypatch, tmp_path):
    monkeypatch.setenv("KDLAB_RUN_CACHE", "1")
    monkeypatch.setenv("KDLAB_DATA", str(tmp_path / "data"))
    return tmp_path / "data" / "cache" / "runs"


def test_a_digest_changes_with_one_bit_a_dtype_a_shape_or_a_value_and_not_otherwise():
    x = torch.linspace(0, 1, 12)
    assert run_cache.digest(x) == run_cache.digest(x.clone())
    nudged = x.clone()
    nudged[5] = torch.nextafter(nudged[5], torch.tensor(2.0))
    others = [nudged, x.double(), x.view(3, 4), {"a": x}, [x, 1], (x, 1.0), None]
    digests = {run_cache.digest(x)} | {run_cache.digest(o) for o in others}
    assert len(digests) == 1 + len(others)
    module = torch.nn.Linear(3, 2)
    assert run_cache.digest(module) == run_cache.digest(module.state_dict())
    with pytest.raises(TypeError, match="not a tensor, module, plain value"):
        run_cache.digest(object())


def test_computed_once_per_configuration_and_code_and_never_when_turned_off(cache_on, monkeypatch):
    calls = []

    def compute():
        calls.append(1)
        return {"value": torch.tensor([len(calls)])}

    first, reused = run_cache.cached("unit", {"a": 1}, compute)
    again, reused_again = run_cache.cached("unit", {"a": 1}, compute)
    assert (reused, reused_again, len(calls), int(again["value"])) == (False, True, 1, 1)
    assert run_cache.cached("unit", {"a": 2}, compute)[1] is False and len(calls) == 2
    monkeypatch.setattr(run_cache, "code_digest", lambda: "another version of the code")
    assert run_cache.cached("unit", {"a": 1}, compute)[1] is False and len(calls) == 3
    monkeypatch.setenv("KDLAB_RUN_CACHE", "0")
    assert run_cache.cached("unit", {"a": 1}, compute)[1] is False and len(calls) == 4


def test_a_corrupt_cache_file_is_moved_aside_said_and_recomputed(cache_on):
    run_cache.cached("unit", {"a": 1}, lambda: {"value": 1})
    path = run_cache.cache_path("unit", {"a": 1})
    path.write_bytes(path.read_bytes()[:-3] + b"bad")
    messages = []
    value, reused = run_cache.cached("unit", {"a": 1}, lambda: {"value": 2}, log=messages.append)
    assert (value, reused) == ({"value": 2}, False)
    assert "corrupt" in messages[0] and path.with_name(path.name + ".corrupt").exists()


def test_the_code_digest_covers_every_module_of_the_kit():
    assert len(run_cache.code_digest()) == 16
    assert any(p.name == "run_cache.py" for p in run_cache.PACKAGE.rglob("*.py"))


def fewshot_setting():
    data = tiny_fewshot()
    sampler = EpisodeSampler(data, "test", ways=5, shots=1, queries=2, seed=1)
    return data, [tuple(sampler.episode(i)) for i in range(3)]


def table(data, tasks, seed=0, init_seed=None):
    """06's rows; `init_seed` draws the starting weights from another seed (same shapes, same episodes)."""
    return tsmd_lesson.table_seed(
        data, seed=seed, shots=1, ways=5, queries=2, iterations=2, meta_batch=2, test_tasks=tasks,
        make_models=lambda s: benchmark.glyph_models(s if init_seed is None else init_seed, ways=5,
                                                     teacher_hidden=4, student_hidden=2),
        inner_steps=1, inner_lr=0.4, teacher_inner_steps=1, kd_weight=1.0, temperature=1.0, meta_lr=1e-3, log=None)


def test_notebook_08s_rows_are_read_from_notebook_06s_runs_and_equal_computing_them(cache_on, monkeypatch):
    data, tasks = fewshot_setting()
    monkeypatch.setenv("KDLAB_RUN_CACHE", "0")
    computed = comparison.fewshot_seed(data, 0, test_tasks=tasks, queries=2, iterations=2, teacher_hidden=4,
                                       student_hidden=2)
    monkeypatch.setenv("KDLAB_RUN_CACHE", "1")
    from_06 = table(data, tasks)
    assert len(list(cache_on.glob("tsmd-row-*.pt"))) == 4  # 06's four rows
    trained = []
    real = tsmd_rows.fit_episodes
    monkeypatch.setattr(tsmd_rows, "fit_episodes", lambda *a, **k: trained.append(1) or real(*a, **k))
    reused = comparison.fewshot_seed(data, 0, test_tasks=tasks, queries=2, iterations=2, teacher_hidden=4,
                                     student_hidden=2)
    assert trained == [], "notebook 08 meta-trained a row that notebook 06 had run with the same settings"
    for row in comparison.FEWSHOT_ROWS:
        assert reused[row] == computed[row] == from_06["accuracies"][row]
        assert reused[row + "/seconds"] == from_06["seconds"][row]
    again = table(data, tasks)
    for row, (teacher, student) in from_06["models"].items():
        for old, new in ((teacher, again["models"][row][0]), (student, again["models"][row][1])):
            assert (old is None) == (new is None)
            if old is not None:   # the cached weights are put back into the models
                assert all(torch.equal(v, new.state_dict()[k]) for k, v in old.state_dict().items())
    table(data, tasks, seed=1)   # other starting weights and episodes: computed, not reused
    assert len(trained) == 4 and len(list(cache_on.glob("tsmd-row-*.pt"))) == 8
    table(data, tasks, init_seed=5)   # the same episodes from other starting weights: computed, not reused
    assert len(trained) == 8 and len(list(cache_on.glob("tsmd-row-*.pt"))) == 12
