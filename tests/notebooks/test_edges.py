"""The edges of every notebook's parameters (kdlab.edges): every value config refuses is refused by the
notebook before any work; a time-bounded set of allowed extremes runs to the end in smoke (`make edges`
runs every allowed extreme)."""
import json

import pytest

from kdlab import config, edges

from .conftest import NOTEBOOK_DIR, NOTEBOOKS, notebook_params

pytestmark = pytest.mark.notebook

# allowed extremes run to the end in CI (the whole grid: make edges)
CI_RUNS = [("00_start_here", "SEED", 2**32 - 1), ("01_knowledge_distillation", "ALPHA", 0.0),
           ("01_knowledge_distillation", "ALPHA", 1.0), ("02_maml", "INNER_STEPS", 0),
           ("03_metadistil", "TEACHER_LR", 0.0), ("04_metadistiller", "NUM_EXITS", 2),
           # 04's meta-gradient check: both gradients exactly zero at ALPHA = 0, the gradient shrinking as tau^2
           # towards the objective's rounding error at a small TEMPERATURE, tau (p_s - p_t) at the largest
           ("04_metadistiller", "ALPHA", 0.0), ("04_metadistiller", "TEMPERATURE", 0.05),
           ("04_metadistiller", "TEMPERATURE", 1000.0),
           ("02_maml", "WAYS", 60)]  # as many ways as the smoke profile's glyph splits have classes


@pytest.mark.parametrize("path", notebook_params())
def test_every_parameter_has_a_rule_and_extremes_on_both_sides(path):
    for name in edges.parameters_of(path):
        ruled = name in config.RULES or (path.stem[:2], name) in config.NOTEBOOK_RULES or name == "DATASET"
        assert ruled, f"{path.name}: {name} has no rule in kdlab.config"  # DATASET: the data registry's names
        assert name in edges.EXTREMES, f"{path.name}: {name} has no extremes in kdlab.edges.EXTREMES"
        values = [e for e in edges.grid([path], [name])]
        assert any(not e.allowed for e in values), f"{path.name}: no value of {name} is refused"


@pytest.mark.parametrize("path", notebook_params())
def test_every_refused_value_is_refused_before_any_work(path):
    refused = [e for e in edges.grid([path]) if not e.allowed]
    edges.check_refusals(path, refused)
    wrong = [(e.name, e.value, e.outcome) for e in refused if e.outcome != "refused"]
    assert not wrong, f"{path.name}: not refused by config's message before any work: {wrong}"


def test_a_parameter_the_notebook_forgets_to_validate_is_caught(tmp_path):
    """Planted bug: notebook 01 without ALPHA in its validation; ALPHA = 1.1 must then not count as refused."""
    source = NOTEBOOK_DIR / "01_knowledge_distillation.ipynb"
    notebook = json.loads(source.read_text())
    for cell in notebook["cells"]:
        cell["source"] = [line.replace("ALPHA=ALPHA, ", "") for line in cell["source"]]
    planted = tmp_path / source.name
    planted.write_text(json.dumps(notebook))
    (edge,) = [e for e in edges.grid([planted], ["ALPHA"]) if e.value == 1.1]
    edges.check_refusals(planted, [edge])
    assert edge.outcome == "not refused"


@pytest.mark.parametrize("stem,name,value", CI_RUNS, ids=[f"{s[:2]}-{n}={v}" for s, n, v in CI_RUNS])
def test_allowed_extremes_run_to_the_end(stem, name, value, tmp_path):
    (path,) = [p for p in NOTEBOOKS if p.stem == stem]
    (edge,) = [e for e in edges.grid([path], [name]) if e.value == value]
    assert edge.allowed
    edges.run_edge(edge, path, tmp_path, execution_timeout=240, outer_timeout=420)
    assert edge.outcome == "ran", f"{stem} {name}={value!r}: {edge.outcome}"
