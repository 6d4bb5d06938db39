"""The book's page "Reproduced vs paper": each notebook's recorded key numbers next to the paper's.

Read, never retyped: the kit's numbers from the recorded `class` run (`benchmarks/results/class_run.json`,
rendered by the README's own templates in `benchmarks/readme_numbers.py`) and from this build's executed
notebooks; the papers' numbers, with table and row, from `kdlab.recipes`; paper-scale runs of
`make reproduce` from `runs/reproduce/reproduced.csv` when one exists.
"""
import csv
import importlib.util
import json

from .. import recipes
from ..paths import REPO_ROOT
from ..runner import find_notebooks

RECORDED = REPO_ROOT / "benchmarks" / "results" / "class_run.json"
TEMPLATES = REPO_ROOT / "benchmarks" / "readme_numbers.py"
REPRODUCED = REPO_ROOT / "runs" / "reproduce" / "reproduced.csv"

# notebook: (recipe settings of its paper, what differs between the kit's run and the paper's)
PAPERS = {
    "00_start_here": ((), "the tour has no paper"),
    "01_knowledge_distillation": (("kd_resnet32x4_resnet8x4", "kd_resnet56_resnet20"),
                                  "the kit distils into an 8-unit MLP on 300 digits (and MNIST-1D); the paper's "
                                  "number is KD on CIFAR-100 after 240 epochs, with no CE baseline in kdlab.recipes"),
    "02_maml": (("maml_omniglot_5w1s", "maml_miniimagenet_5w1s"),
                "the closest pair: the kit's glyphs are an Omniglot-like set rendered offline from fonts, so "
                "glyphs 5-way 1-shot stands next to Omniglot 5-way 1-shot; the training budget is minutes, not "
                "60,000 iterations"),
    "03_metadistil": (("metadistil_resnet56_resnet20", "kd_resnet56_resnet20"),
                      "the kit compares MetaDistil with KD on 90% of 300 digits; in the paper's table MetaDistil "
                      "is 71.25 and KD 70.66 on CIFAR-100 (a gap of +0.59), from one run each"),
    "04_metadistiller": (("metadistiller_wrn16_1",),
                         "the kit's self-distillation uses a SmallCNN with exits on digits; the paper's WRN-16-1 "
                         "on CIFAR-100: MD 70.30 vs SD 69.42 (+0.88)"),
    "05_mmkd": (("mmkd_vgg13_vgg8", "mmkd_resnet32x4_vgg8", "mmkd_wrn40_2_wrn40_1"),
                "the kit's teachers are three small nets on digits; the paper's three teachers per pair are "
                "CIFAR-100 networks"),
    "06_tsmd": (("tsmd_miniimagenet_5w1s", "tsmd_miniimagenet_5w5s"),
                "the kit runs glyphs with a compact Conv-4; the paper runs mini-ImageNet with a ResNet teacher"),
    "07_meta_feature_distillation": (("preprint_cifar10_fd_adapt",),
                                     "the kit runs digits-sized CNNs; the preprint fine-tunes ImageNet networks on "
                                     "CIFAR-10 at 84x84 (its baseline: 88.03)"),
    "08_comparison": (("dkd_resnet32x4_resnet8x4",),
                      "no paper runs every method on one benchmark: this comparison is the kit's own; DKD's row "
                      "is the strongest plain logit baseline's CIFAR-100 number (KD 73.33 on the same pair)"),
    "09_learning_alpha_and_temperature": (("ctkd_resnet56_resnet20", "dkd_resnet56_resnet20"),
                                          "the kit learns alpha and T for an MLP on 270 digits; CTKD's README "
                                          "reports +0.53 over KD (70.66) on CIFAR-100 resnet56 -> resnet20, "
                                          "one number per method"),
}


def _templates():
    """The README's per-notebook templates (one source for what a notebook's key numbers say)."""
    spec = importlib.util.spec_from_file_location("kdlab_readme_numbers", TEMPLATES)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def kit_statement(stem, run, module):
    """The key numbers of one notebook's run in the README's words, or why there are none."""
    if run is None:
        return "not recorded"
    if run.get("status") != "ok":
        return f"{run.get('status')} in this run"
    _, template = module.ROWS.get(stem, ("", "{time}"))
    try:
        return template.format(r=run.get("results", {}), time=module._duration(run.get("seconds", 0)))
    except (KeyError, IndexError, TypeError, ValueError):
        return "key numbers not recorded in this run"


def paper_statement(name):
    s = recipes.get(name)
    number = f"{s.paper_number}" + (f" ± {s.paper_interval}" if s.paper_interval is not None else "")
    pair = f"{s.teacher} → {s.student}" if s.teacher else s.student
    return f"**{number}** ({s.dataset}, {pair}; {s.source.split(';')[0]})"


def reproduced_rows(path=REPRODUCED):
    """{setting: row} of the paper-scale runs `make reproduce` recorded, if any."""
    if not path.is_file():
        return {}
    with open(path, newline="") as handle:
        return {row["setting"]: row for row in csv.DictReader(handle)}


def _title(stem, notebooks_dir=REPO_ROOT / "notebooks"):
    """The notebook's own title (its first `# ` heading), or its file name."""
    import nbformat

    path = notebooks_dir / f"{stem}.ipynb"
    if path.is_file():
        for cell in nbformat.read(str(path), as_version=4).cells:
            for line in cell.source.splitlines():
                if cell.cell_type == "markdown" and line.startswith("# "):
                    return line[2:].strip()
    return stem


def render(build_runs, build_profile, recorded=RECORDED):
    """The page's Markdown. `build_runs` = {stem: {status, seconds, results}} of this build's notebooks."""
    module = _templates()
    recorded_runs = json.loads(recorded.read_text())["notebooks"] if recorded.is_file() else {}
    paper_scale = reproduced_rows()
    smoke_note = " (the smoke profile checks mechanics, not accuracy)" if build_profile == "smoke" else ""
    lines = [
        "# Reproduced vs paper", "",
        "Each notebook's key numbers as the kit recorded them, next to the paper's headline number for the "
        "method. The kit runs offline, on small data and on a laptop CPU: its numbers test the *mechanism* "
        "of each paper and are not the paper's experiment; each section says how the two differ.", "",
        "Read from `benchmarks/results/class_run.json` (the recorded `class` run: the README's numbers), this "
        f"book's own `{build_profile}` run, and `kdlab/recipes.py` (the papers' numbers, with table and row).", "",
    ]
    stems = [path.stem for path in find_notebooks(REPO_ROOT / "notebooks")]
    for stem in stems:
        settings, differs = PAPERS.get(stem, ((), "no paper setting is mapped to this notebook yet "
                                                   "(kdlab/book/reproduced.py, PAPERS)"))
        lines += [f"## {_title(stem)}", "",
                  f"* **The kit, recorded `class` run** (2-core CPU): {kit_statement(stem, recorded_runs.get(stem), module)}",
                  f"* **This book's run** (`{build_profile}`{smoke_note}): "
                  f"{kit_statement(stem, build_runs.get(stem), module)}"]
        if settings:
            lines.append("* **The paper:**")
            lines += [f"  * {paper_statement(name)}" for name in settings]
        lines += [f"* **How the two differ:** {differs}.", "",
                  f"[Read the notebook](../notebooks/{stem}.ipynb).", ""]
    lines += ["", "## At paper scale", ""]
    if paper_scale:
        lines += ["Runs of `make reproduce` found in `runs/reproduce/reproduced.csv`:", "",
                  "| setting | paper | ours (mean ± 95% half-width) | seeds | comparable |", "|---|---|---|---|---|"]
        for name, row in paper_scale.items():
            lines.append(f"| {name} | {row.get('paper_number')} | {row.get('ours_mean')} ± {row.get('ours_half_width')} | "
                         f"{row.get('seeds')} | {row.get('comparable')} |")
    else:
        lines.append("No paper-scale run has been recorded on this machine: `make reproduce` trains the settings "
                     "above on a GPU with the torchvision datasets and writes `runs/reproduce/reproduced.csv`, "
                     "which this page then lists (`kdlab reproduce --list` prints every setting).")
    return "\n".join(lines) + "\n"
