"""What a notebook's kernel pays before its first useful step, each part timed in a fresh process.

    python benchmarks/fixed_costs.py            # about a minute on a 2-core CPU

Parts: starting a kernel and running an empty notebook under papermill; `import torch`; `import
matplotlib.pyplot`; importing each notebook's lesson module on top of those two; loading each data set the
notebooks use, cold (an empty data folder: generated and written to the cache) and warm (read back from the
cache); training the digits teacher that notebooks 01, 03 and 09 share (MLP 64-256-256-10, 150 epochs of
batch 64 at lr 0.01, as their `class` profile). Every part runs in its own Python process (a kernel starts
cold), `--repeats` times; the table gives the median, one torch thread, and the load average around the run.

Writes benchmarks/results/fixed_costs.md.
"""
import argparse
import datetime
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import nbformat

from kdlab import runner

RESULTS = Path(__file__).resolve().parent / "results" / "fixed_costs.md"
LESSONS = ["kd", "maml", "metadistil", "metadistiller", "mmkd", "tsmd", "feature_meta", "comparison",
           "alpha_temperature"]
DATA = {"digits (300 training images)": 'load("digits", train_size=300, seed=0)',
        "mnist1d": 'load("mnist1d")',
        "glyphs (class: 28 px, 20 per class)": 'load("glyphs", image_size=28, samples_per_class=20)'}
TEACHER_SETUP = """
import torch
from kdlab.data import load
from kdlab.models import MLP
from kdlab.train import fit
digits = load("digits", train_size=300, seed=0)
torch.manual_seed(0)
teacher = MLP(64, hidden=(256, 256), num_classes=10)
"""
TEACHER_FIT = "fit(teacher, digits, epochs=150, lr=0.01, batch_size=64, seed=0, progress=False)"


def timed(code, setup="", env=None):
    """Seconds that `code` takes in a fresh interpreter after `setup` (both run there, only `code` is timed)."""
    program = (f"import time\n{setup}\nstart = time.perf_counter()\n{code}\n"
               "print(time.perf_counter() - start)")
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, check=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1", "KDLAB_THREADS": "1", **(env or {})})
    return float(result.stdout.strip().splitlines()[-1])


def kernel_seconds(folder):
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    parameters = nbformat.v4.new_code_cell('PROFILE = "class"')
    parameters.metadata["tags"] = ["parameters"]
    notebook.cells = [parameters, nbformat.v4.new_code_cell("pass")]
    path = Path(folder) / "empty.ipynb"
    nbformat.write(notebook, str(path))
    return runner.execute_notebook(path, Path(folder) / "out" / "empty.ipynb", profile="class").seconds


def median_of(function, repeats):
    return statistics.median(function() for _ in range(repeats))


def measure(repeats):
    rows = []
    with tempfile.TemporaryDirectory(prefix="kdlab-fixed-") as folder:
        rows.append(("kernel start + empty notebook (papermill)", median_of(lambda: kernel_seconds(folder), repeats)))
    rows.append(("import torch", median_of(lambda: timed("import torch"), repeats)))
    rows.append(("import matplotlib.pyplot", median_of(lambda: timed("import matplotlib.pyplot"), repeats)))
    base = "import torch\nimport matplotlib.pyplot"
    for lesson in LESSONS:
        rows.append((f"import kdlab.lessons.{lesson} (after torch, matplotlib)",
                     median_of(lambda: timed(f"import kdlab.lessons.{lesson}", base), repeats)))
    for name, call in DATA.items():
        cold, warm = [], []
        for _ in range(repeats):
            with tempfile.TemporaryDirectory(prefix="kdlab-data-") as root:
                env = {"KDLAB_DATA": root}
                cold.append(timed(call, "import torch\nfrom kdlab.data import load", env))
                warm.append(timed(call, "import torch\nfrom kdlab.data import load", env))
        rows.append((f"data {name}: cold (generated, cached)", statistics.median(cold)))
        rows.append((f"data {name}: warm (from the cache)", statistics.median(warm)))
    rows.append(("digits teacher of 01/03/09 (150 epochs)", median_of(lambda: timed(TEACHER_FIT, TEACHER_SETUP), repeats)))
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    load_before = os.getloadavg()
    rows = measure(args.repeats)
    load_after = os.getloadavg()
    lines = ["# Fixed costs before a notebook's first useful step", "",
             "`python benchmarks/fixed_costs.py`: each part in a fresh Python process, median of "
             f"{args.repeats}, one torch thread.", "",
             f"Last run {datetime.date.today()} on {platform.node()} ({os.cpu_count()} CPU cores), python "
             f"{platform.python_version()}; load average {load_before[0]:.1f} before, {load_after[0]:.1f} after.", "",
             "| part | seconds |", "|---|---:|", *[f"| {name} | {seconds:.2f} |" for name, seconds in rows], ""]
    RESULTS.write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
