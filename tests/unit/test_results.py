"""kdlab.results in this process: recording, the JSON file, NaN handling and reading notebooks back.

The round trip through a real kernel and papermill is in test_runner.py.
"""
import json
import math

import nbformat
import numpy as np
import pytest

from kdlab import results
from kdlab.errors import ParameterError
from kdlab.stats import mean_ci


@pytest.fixture(autouse=True)
def fresh_results(monkeypatch):
    monkeypatch.delenv(results.RESULTS_JSON_ENV, raising=False)
    results.clear()
    yield
    results.clear()


def strict_json(text):
    """Parse as standard JSON, which has no NaN or Infinity (JupyterLab's parser rejects them)."""
    def reject(constant):
        raise ValueError(f"non-standard JSON constant {constant}")

    return json.loads(text, parse_constant=reject)


def test_record_keeps_values_in_memory_and_says_what_it_recorded(capsys):
    assert results.record("kd_accuracy", 0.9134, fmt=".1%") == 0.9134
    results.record("teacher", "resnet8x4")
    assert results.all_results() == {"kd_accuracy": 0.9134, "teacher": "resnet8x4"}
    assert "recorded: kd_accuracy = 91.3%" in capsys.readouterr().out
    results.clear()
    assert results.all_results() == {}


def test_record_converts_numpy_and_stats_objects_to_plain_values():
    results.record("seeds", np.array([1, 2, 3]))
    results.record("best", np.float32(0.5))
    results.record("accuracy", mean_ci([1.0, 2.0, 3.0]))
    stored = results.all_results()
    assert stored["seeds"] == [1, 2, 3] and type(stored["best"]) is float
    assert stored["accuracy"]["mean"] == 2.0 and stored["accuracy"]["n"] == 3
    assert stored["accuracy"]["half_width"] == pytest.approx(4.302653 / math.sqrt(3), rel=1e-6)


def test_results_file_is_rewritten_atomically_as_standard_json(tmp_path, monkeypatch):
    target = tmp_path / "out.ipynb.results.json"
    monkeypatch.setenv(results.RESULTS_JSON_ENV, str(target))
    results.record("alpha", 0.9)
    results.record("loss", float("nan"))
    results.record("curve", [1.0, float("inf"), 0.5])
    stored = strict_json(target.read_text())
    assert stored == {"results": {"alpha": 0.9, "loss": "nan", "curve": [1.0, "inf", 0.5]},
                      "formats": {}, "not_finite": ["loss", "curve"]}
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name]  # no temporary files left
    decoded = results.decode(stored)
    assert math.isnan(decoded["loss"]) and decoded["curve"][1] == math.inf


def test_nan_is_recorded_but_flagged(capsys):
    results.record("accuracy", float("nan"))
    assert math.isnan(results.all_results()["accuracy"])
    assert "not a finite number" in capsys.readouterr().out


@pytest.mark.parametrize("name, value, fmt, message", [
    ("", 1.0, None, "name=''"),
    ("model", object(), None, "a number, string, bool, None"),
    ("accuracy", 0.9, ".1q", "fmt='.1q'"),
    ("weights", list(range(10_000)), None, "at most 20000 characters"),
])
def test_bad_input_gives_one_clear_message(name, value, fmt, message):
    with pytest.raises(ParameterError, match=message):
        results.record(name, value, fmt=fmt)
    assert results.all_results() == {}


def notebook_with_outputs(outputs, metadata=None):
    notebook = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("record(...)")
    cell.outputs = [nbformat.from_dict(output) for output in outputs]
    notebook.cells = [cell]
    if metadata is not None:
        notebook.metadata["kdlab"] = metadata
    return notebook


def display_output(name, value, fmt=None, not_finite=False):
    entry = {"name": name, "value": value, "fmt": fmt, "not_finite": not_finite}
    return {"output_type": "display_data", "metadata": {},
            "data": {"application/vnd.kdlab.results+json": entry, "text/plain": f"recorded: {name}"}}


def test_read_results_scrapes_outputs_when_metadata_is_missing(tmp_path):
    path = tmp_path / "executed.ipynb"
    nbformat.write(notebook_with_outputs([
        display_output("accuracy", 0.5),
        {"output_type": "stream", "name": "stdout", "text": "training...\n"},
        display_output("loss", "nan", not_finite=True),
        display_output("accuracy", 0.75, fmt=".1%"),  # recorded again: the later value wins
    ]), str(path))
    read = results.read_results(path)
    assert read["accuracy"] == 0.75 and math.isnan(read["loss"])
    assert results.read_payload(path)["formats"] == {"accuracy": ".1%"}


def test_read_results_prefers_the_metadata_the_runner_wrote(tmp_path):
    path = tmp_path / "executed.ipynb"
    metadata = {"results": {"accuracy": 0.9, "loss": "inf"}, "not_finite": ["loss"], "formats": {}}
    nbformat.write(notebook_with_outputs([display_output("accuracy", 0.1)], metadata), str(path))
    assert results.read_results(path) == {"accuracy": 0.9, "loss": math.inf}


def test_format_value():
    assert results.format_value(0.91234, ".1%") == "91.2%"
    assert results.format_value(0.91234, "{:.2f} %") == "0.91 %"
    assert results.format_value(1 / 3) == "0.3333"
    assert results.format_value({"mean": 2 / 3, "n": 5}) == "{mean: 0.6667, n: 5}"
