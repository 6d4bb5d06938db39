"""Run one point of a sweep from a task file, e.g. inside a batch job: `python -m kdlab.sweep task.json`.

The task file is `kdlab.sweep.points.task_json(task)`; the point's record is written next to its
executed notebook, as with any other executor. Exit code 0 when the point finished ok.
"""
import json
import sys
from pathlib import Path

from .points import PointTask, run_point

if len(sys.argv) != 2:
    sys.exit("usage: python -m kdlab.sweep TASK.json   (a task written by kdlab.sweep.points.task_json)")
record = run_point(PointTask(**json.loads(Path(sys.argv[1]).read_text())))
sys.exit(0 if record["status"] == "ok" else 1)
