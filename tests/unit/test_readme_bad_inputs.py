"""The README's bad-input table is the code's behaviour: every row is raised with exactly that message."""
import ast
import re
from pathlib import Path

import pytest

from kdlab import config
from kdlab.env import pick_device
from kdlab.errors import ParameterError

README = Path(__file__).resolve().parents[2] / "README.md"
ROW = re.compile(r"^\| `(?P<name>[A-Z_]+)` \| (?P<where>[^|]+) \| `(?P<value>[^`]+)` \| (?P<message>.+) \|$")


def table_rows():
    text = README.read_text()
    start = text.index("<!-- bad-input table")
    rows = [ROW.match(line) for line in text[start:].splitlines()[3:]]
    rows = [r for r in rows[: next(i for i, r in enumerate(rows) if r is None)]]
    return [pytest.param(r["name"], r["value"], r["message"], r["where"].strip(), id=f"{r['name']}={r['value']}@{r['where'].strip()}")
            for r in rows]


def test_the_table_covers_the_shared_parameters():
    names = {p.values[0] for p in table_rows()}
    assert {"PROFILE", "SEED", "DEVICE", "DATASET", "ALPHA", "TEMPERATURE", "INNER_STEPS", "INNER_LR",
            "META_LR"} <= names


@pytest.mark.parametrize("name,value,message,where", table_rows())
def test_each_row_gets_its_message(name, value, message, where, monkeypatch):
    value = ast.literal_eval(value)
    with pytest.raises(ParameterError) as info:
        if name == "DEVICE" and value == "cuda":
            monkeypatch.setattr("torch.cuda.is_available", lambda: False)
            pick_device(value)
        elif (where, name) in config.NOTEBOOK_RULES:  # a row for one notebook that narrows the shared rule
            config.check(name, value, notebook=where)
        else:
            config.check(name, value)
    assert str(info.value) == message
