"""The reproduced-vs-paper table and the dry-run table (CSV and Markdown), and the projected paper-run time."""
import csv
import dataclasses
import math
from pathlib import Path

from .. import recipes, stats

TRAIN_SIZE = {"cifar10": 50_000, "cifar100": 50_000}

def steps_per_epoch(setting):
    if setting.episodic:
        return 1
    train_size = TRAIN_SIZE[setting.dataset] * (1 - setting.knobs.get("quiz_fraction", 0.0))
    per = train_size / setting.batch_size
    return math.floor(per) if setting.method == "mmkd" else math.ceil(per)


def projected_hours(setting, step_seconds):
    """Steps per epoch x epochs (or iterations) x step time, in hours, at the paper's batch."""
    total = setting.iterations if setting.episodic else steps_per_epoch(setting) * setting.epochs
    return total * step_seconds / 3600


def summarise(setting, results, *, comparable, epochs):
    """One reproduced-vs-paper row from the per-seed results of one setting."""
    accs = [r["acc"] for r in results]
    interval = stats.mean_ci(accs)
    return {"setting": setting.name, "paper": setting.paper, "paper_number": setting.paper_number,
            "ours_mean": round(interval.mean, 2),
            "ours_half_width": round(interval.half_width, 2) if math.isfinite(interval.half_width) else "",
            "seeds": len(accs), "difference": round(interval.mean - setting.paper_number, 2),
            "comparable": "yes" if comparable else "no", "epochs": epochs,
            "wall_hours": round(sum(r["seconds"] for r in results) / 3600, 4), "device": results[0]["device"],
            "source": setting.source}


def append_rows(folder, stem, fields, rows):
    """Append `rows` to `<stem>.csv` and rewrite `<stem>.md` from the whole CSV (atomically)."""
    from ..atomic import write_bytes

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    csv_path = folder / f"{stem}.csv"
    old = list(csv.DictReader(csv_path.open())) if csv_path.exists() else []
    every = old + [{k: row.get(k, "") for k in fields} for row in rows]
    lines = [",".join(fields)] + [",".join(_csv_cell(r[k]) for k in fields) for r in every]
    write_bytes(csv_path, ("\n".join(lines) + "\n").encode())
    md = ["| " + " | ".join(fields) + " |", "|" + "---|" * len(fields)]
    md += ["| " + " | ".join(str(r[k]) for k in fields) + " |" for r in every]
    write_bytes(folder / f"{stem}.md", ("\n".join(md) + "\n").encode())
    return csv_path


def _csv_cell(value):
    text = str(value)
    return '"' + text.replace('"', '""') + '"' if any(c in text for c in ',"\n') else text


def dry_row(setting, results):
    """The dry run's cost row. The projection is for the paper's data volume: at a smaller `--batch`, steps
    per epoch grow accordingly (classification); a smaller meta-batch is scaled up linearly (episodic: the
    tasks of a meta-batch are processed one after another)."""
    r = results[0]
    if setting.episodic:
        hours = projected_hours(setting, r["step_seconds"] * setting.meta_batch / r["batch"])
    else:
        setting = dataclasses.replace(setting, batch_size=r["batch"])
        hours = projected_hours(setting, r["step_seconds"])
    return {"setting": setting.name, "device": r["device"], "batch": r["batch"],
            "step_ms": round(1000 * r["step_seconds"], 1), "peak_mb": round(r["peak_mb"], 1),
            "steps_per_epoch": steps_per_epoch(setting), "length": recipes.length(setting),
            "projected_hours": round(hours, 1), "resumed": r["resumed"]}


