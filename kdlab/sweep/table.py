"""The tidy results table of a sweep: one row per point, one column per parameter and recorded result.

Recorded lists and dicts are flattened: `{"mean": 1, "low": 0}` under `acc` gives columns `acc.mean`
and `acc.low`; a short list `[low, high]` gives `ci.0` and `ci.1`; a longer list (a curve) stays
one column of JSON text.
"""
import csv
import io
import json
import os
import tempfile
from pathlib import Path

from .points import results_of

MAX_LIST_COLUMNS = 8
STATUS_COLUMNS = ("status", "seconds", "attempts")


def flatten(results, prefix=""):
    """{name: value} with nested dicts and short lists spread over `name.key` / `name.0` columns."""
    flat = {}
    for name, value in results.items():
        key = f"{prefix}{name}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, prefix=f"{key}."))
        elif isinstance(value, list) and 0 < len(value) <= MAX_LIST_COLUMNS \
                and not any(isinstance(item, (list, dict)) for item in value):
            flat.update({f"{key}.{index}": item for index, item in enumerate(value)})
        elif isinstance(value, (list, dict)):
            flat[key] = json.dumps(value)
        else:
            flat[key] = value
    return flat


def make_rows(records, parameter_names):
    """One row per record: point, parameters, status, seconds, attempts, results..., error."""
    rows = []
    for record in records:
        row = {"point": record["point"]}
        row.update({name: record["parameters"].get(name) for name in parameter_names})
        row.update(status=record["status"], seconds=round(record["seconds"], 1), attempts=record["attempts"])
        fixed = set(row) | {"error"}
        for name, value in flatten(results_of(record)).items():
            row[f"result.{name}" if name in fixed else name] = value  # a result called like a column
        row["error"] = " | ".join(line.strip() for line in (record.get("error") or "").splitlines() if line.strip())
        rows.append(row)
    return rows


def columns_of(rows):
    """Column order: point and parameters first, then results in order of appearance, error last."""
    columns = []
    for row in rows:
        columns.extend(name for name in row if name not in columns and name != "error")
    return columns + ["error"]


def write_csv(rows, path):
    """Write the rows as CSV (atomically); empty cells where a point recorded nothing."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns_of(rows), restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w", newline="") as handle:
        handle.write(buffer.getvalue())
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
    return path


def read_csv(path):
    """The rows of a results table, as strings."""
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def format_summary(rows, metric=None, reused=()):
    """A Markdown table of the points: status (reused or run), time, attempts, the metric, the error."""
    header = ["point", "status", "time", "attempts"] + ([metric] if metric else []) + ["error"]
    lines = [header]
    for row in rows:
        status = row["status"] + (" (reused)" if row["point"] in reused else "")
        value = row.get(metric, "") if metric else None
        shown = f"{value:.4g}" if isinstance(value, float) else str(value if value is not None else "")
        error = row["error"][:100] + ("..." if len(row["error"]) > 100 else "")
        lines.append([row["point"], status, f"{row['seconds']:.1f} s", str(row["attempts"])]
                     + ([shown] if metric else []) + [error])
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = ["| " + " | ".join(cell.ljust(width) for cell, width in zip(line, widths)) + " |" for line in lines]
    text.insert(1, "|" + "|".join("-" * (width + 2) for width in widths) + "|")
    return "\n".join(text)
