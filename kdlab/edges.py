"""The edges of every notebook's parameter space: each extreme value either runs to the end in `smoke` or is
refused before any work with `config`'s one-line message.

    kdlab edges                      # the whole grid, every notebook (make edges); a table in benchmarks/results/
    kdlab edges 03 --names ALPHA     # part of it

For each parameter of a notebook's `parameters` cell, EXTREMES lists the values at and beyond the edges
of what `config.RULES` allows (ALPHA 0 and 1, the smallest and the largest TEMPERATURE, INNER_STEPS 0 and
large, the largest SEED numpy accepts, ...). Whether a value is allowed is asked of `config.check` with
the notebook's own rules, so the grid follows the rules and never hard-codes an outcome: an allowed value
must run, any other must be refused by the notebook's validation, in the cells before its first training.
"""
import ast
import json
import time
from dataclasses import dataclass
from pathlib import Path

from . import config
from .errors import KdlabError

# values at and beyond each parameter's edges; defaults come from the notebook itself
EXTREMES = {
    "SEED": (0, 2**32 - 1, -1, 1.5),
    "DEVICE": ("cpu", "tpu"),
    "PROFILE": ("lecture",),
    "DATASET": ("digits", "mnist1d", "glyphs", "imagenet"),
    "ALPHA": (0.0, 1.0, -0.1, 1.1),
    "TEMPERATURE": (0.05, 1000.0, 0.0, -1.0, 1e4, float("inf")),
    "INNER_STEPS": (0, 8, -1),
    "TEACHER_INNER_STEPS": (1, 5, 0),
    "INNER_LR": (1e-4, 1.0, 0.0),
    "META_LR": (1e-5, 0.1, 0.0),
    "LR": (1e-3, 0.5, 0.0),
    "TEACHER_LR": (0.0, 1e-2, -1e-4),
    "WAYS": (2, 20, 60, 1, 61),  # 60: the classes of a glyph split in smoke (notebooks 02 and 06)
    "QUIZ_FRACTION": (0.02, 0.5, 0.0, 1.0),
    "FREEZE_EPOCHS": (0, 1000, -1),
    "META_EVERY": (1, 1000, 0),
    "NUM_EXITS": (2, 3, 4, 1),
    "BETA": (0.0, 100.0, -1.0),
    "GAMMA": (0.0, 10.0, -1.0),
    "BUFFER_SIZE": (50, 10_000, 0),
    "KD_WEIGHT": (0.0, 10.0, -0.5),
    "ALPHA_SQUARED": (False, True, "yes"),
    "SCHEDULE": ("constant", "linear", "cosine", "step", "exponential"),
    "ALPHA_END": (0.0, 1.0, 1.5),
    "BATCH_SIZE": (1, 10_000, 0),
    "CURRICULUM_EPOCHS": (1, 1000, 0),
}


@dataclass
class Edge:
    notebook: str  # the file's stem
    name: str
    value: object
    allowed: bool  # by config.check with the notebook's rules
    outcome: str = ""  # "ran", "refused", "failed: ...", "refused too late", "not refused"
    seconds: float = 0.0

    @property
    def ok(self):
        return self.outcome == ("ran" if self.allowed else "refused")


def parameters_of(path):
    """The `parameters` cell of a notebook as {name: default value}."""
    cells = json.loads(Path(path).read_text())["cells"]
    tagged = [c for c in cells if "parameters" in c["metadata"].get("tags", [])]
    if len(tagged) != 1:
        raise KdlabError(f"{Path(path).name}: expected one cell tagged 'parameters', found {len(tagged)}")
    values = {}
    for node in ast.parse("".join(tagged[0]["source"])).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            values[node.targets[0].id] = ast.literal_eval(node.value)
    return values


def grid(paths, names=None):
    """Every (notebook, parameter, extreme value) of `paths`, with whether config allows it."""
    edges = []
    for path in paths:
        stem = Path(path).stem
        for name, default in parameters_of(path).items():
            if names and name not in names:
                continue
            for value in EXTREMES.get(name, ()):
                if value == default and type(value) is type(default):
                    continue
                edges.append(Edge(stem, name, value, _allowed(stem, name, value)))
    return edges


def _allowed(stem, name, value):
    try:
        config.check(name, value, notebook=stem[:2])
        return True
    except KdlabError:
        return False


def run_edge(edge, path, out_dir, **execute_options):
    """Run one edge in `smoke`; sets its outcome. A refusal counts only when it is config's message and comes
    from a cell before the first one that trains (the cells up to and including `kdlab.setup`'s validation)."""
    from .runner import execute_notebook

    out = Path(out_dir) / f"{edge.notebook}__{edge.name}={_slug(edge.value)}.ipynb"
    started = time.perf_counter()
    result = execute_notebook(path, out, profile="smoke", parameters={edge.name: edge.value}, **execute_options)
    edge.seconds = time.perf_counter() - started
    if result.ok:
        edge.outcome = "ran"
    elif "is not allowed" in (result.error or "") and _error_cell(out) <= _validation_cell(out):
        edge.outcome = "refused"
    elif "is not allowed" in (result.error or ""):
        edge.outcome = "refused too late"
    else:
        edge.outcome = f"failed: {(result.error or result.status)[:160]}"
    return edge


def _slug(value):
    return str(value).replace("/", "_").replace(" ", "")


def _code_cells(out):
    import nbformat

    return [c for c in nbformat.read(str(out), as_version=4).cells if c.cell_type == "code"]


def _error_cell(out):
    for index, cell in enumerate(_code_cells(out)):
        if any(o.get("output_type") == "error" for o in cell.get("outputs", [])):
            return index
    return len(_code_cells(out))


def _validation_cell(out):
    """The index of the code cell that validates the parameters: `kdlab.setup`'s cell, or the cell right after
    it when that one calls `kdlab.validate`."""
    return validation_index(_code_cells(out))


def validation_index(code_cells):
    sources = ["".join(c["source"]) if isinstance(c["source"], list) else c["source"] for c in code_cells]
    setup = next((i for i, s in enumerate(sources) if "kdlab.setup(" in s), -1)
    after = setup + 1
    return after if after < len(sources) and "kdlab.validate(" in sources[after] else setup


REFUSAL_PROBE = """\
import json as _json, os as _os
_os.environ.pop("KDLAB_PROFILE", None)  # the parameters cell's PROFILE is the one under test
_outcomes = []
for _name, _value in _json.loads({edges!r}):
    _scope = {{"__name__": "__main__"}}
    try:
        exec(compile({parameters!r}, "parameters", "exec"), _scope)
        _scope[_name] = _value
        exec(compile({validation!r}, "validation", "exec"), _scope)
        _outcomes.append("ran")
    except Exception as _error:
        _outcomes.append(("refused: " if "is not allowed" in str(_error) else "failed: ")
                         + type(_error).__name__ + ": " + str(_error)[:160])
print("EDGE-OUTCOMES " + _json.dumps(_outcomes))
"""


def check_refusals(path, edges, timeout=300):
    """Run only the cells up to the notebook's validation for each edge, all in one kernel; each edge's outcome
    becomes "refused" (config's message before any work) or what happened instead. Seconds: per edge."""
    import nbformat
    from nbclient import NotebookClient

    cells = json.loads(Path(path).read_text())["cells"]
    code = [c for c in cells if c["cell_type"] == "code"]
    parameters = next("".join(c["source"]) for c in code if "parameters" in c["metadata"].get("tags", []))
    upto = validation_index(code)
    validation = "\n".join("".join(c["source"]) for c in code[:upto + 1]
                           if "parameters" not in c["metadata"].get("tags", []))
    probe = REFUSAL_PROBE.format(edges=json.dumps([[e.name, e.value] for e in edges]), parameters=parameters,
                                 validation=validation)
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(probe)])
    started = time.perf_counter()
    NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(Path(path).parent)}}).execute()
    text = "".join(o.get("text", "") for o in notebook.cells[0].outputs if o.get("output_type") == "stream")
    outcomes = json.loads(text.split("EDGE-OUTCOMES ", 1)[1].splitlines()[0])
    for edge, outcome in zip(edges, outcomes):
        edge.outcome = "refused" if outcome.startswith("refused") else ("not refused" if outcome == "ran" else outcome)
        edge.seconds = (time.perf_counter() - started) / max(len(edges), 1)
    return edges


def summary_line(edges):
    """When and where, and the counts: how many values ran, were refused, and went otherwise."""
    import datetime
    import os
    import platform

    ran, refused = sum(e.outcome == "ran" for e in edges), sum(e.outcome == "refused" for e in edges)
    return (f"`kdlab edges`, {datetime.date.today()}, {os.cpu_count()} CPU cores, one torch thread: {len(edges)} "
            f"values, {ran} ran to the end, {refused} refused before any work, {len(edges) - ran - refused} "
            f"otherwise; {sum(e.seconds for e in edges) / 60:.1f} min ({platform.python_version()}).")


def format_edges(edges):
    """The grid as a Markdown table: notebook, parameter, value, allowed, outcome, seconds."""
    lines = ["| notebook | parameter | value | allowed | outcome | seconds |", "|---|---|---|---|---|---|"]
    for e in edges:
        mark = "" if e.ok else " (**expected " + ("ran" if e.allowed else "refused") + "**)"
        lines.append(f"| {e.notebook} | {e.name} | `{e.value!r}` | {'yes' if e.allowed else 'no'} | "
                     f"{e.outcome}{mark} | {e.seconds:.1f} |")
    return "\n".join(lines)


# --------------------------------------------------------------------------- command line
def _configure(parser):
    parser.add_argument("notebooks", nargs="*", help="notebook numbers or paths (default: every notebook)")
    parser.add_argument("--names", nargs="*", help="only these parameters")
    parser.add_argument("--refusals-only", action="store_true", help="check only the values that must be refused")
    parser.add_argument("--out", type=Path, default=None, help="where the executed copies go (default: runs/edges)")
    parser.add_argument("--table", type=Path, default=None,
                        help="write the Markdown table here (default: benchmarks/results/edges.md for the whole grid)")


def _edges_command(args):
    from .paths import REPO_ROOT, runs_dir
    from .runner import find_notebooks

    every = find_notebooks(REPO_ROOT / "notebooks")
    wanted = [str(n) for n in args.notebooks]
    paths = [p for p in every if not wanted or any(p.name.startswith(w) or str(p) == w for w in wanted)]
    edges = grid(paths, args.names)
    out = args.out or runs_dir() / "edges"
    by_stem = {p.stem: p for p in paths}
    for stem, path in by_stem.items():  # the refusals: one kernel per notebook, only its validation cells
        check_refusals(path, [e for e in edges if e.notebook == stem and not e.allowed])
    allowed = [] if args.refusals_only else [e for e in edges if e.allowed]
    edges = [e for e in edges if not e.allowed] + allowed
    for number, edge in enumerate(allowed, start=1):  # every allowed value runs the whole notebook in smoke
        run_edge(edge, by_stem[edge.notebook], out)
        print(f"[{number}/{len(allowed)}] {edge.notebook} {edge.name}={edge.value!r}: {edge.outcome} "
              f"({edge.seconds:.0f} s){'' if edge.ok else '  <-- unexpected'}", flush=True)
    table = format_edges(edges)
    whole_grid = not wanted and not args.names and not args.refusals_only
    target = args.table or (REPO_ROOT / "benchmarks" / "results" / "edges.md" if whole_grid else None)
    if target is not None:
        from .atomic import write_bytes

        text = f"# The parameter edges, every notebook in smoke\n\n{summary_line(edges)}\n\n{table}\n"
        write_bytes(target, text.encode())
        print(f"table: {target}")
    else:
        print(table)
    return 0 if all(e.ok for e in edges) else 1


from .cli import register  # noqa: E402  (registered last: the command needs the functions above)

register("edges", _edges_command, configure=_configure,
         help="run every notebook at the edges of its parameters (allowed: must run; others: must be refused)")
