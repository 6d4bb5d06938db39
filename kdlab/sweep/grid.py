"""The grid of a sweep: values from the command line or a YAML file, their Cartesian product, and a
readable, stable, filesystem-safe id for every point, such as `ALPHA=0.5__TEMPERATURE=4__SEED=0`."""
import ast
import hashlib
import itertools
import json
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from .. import config
from ..errors import KdlabError, ParameterError

SEED = "SEED"
SEPARATOR = "__"
MAX_ID_CHARS = 120
GRID_FILE_KEYS = ("parameters", "seeds", "metric")
_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]")


class _Yaml12Loader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2 scalars: `1e-5` is a float, `on`/`no` stay strings."""


_Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, regex) for tag, regex in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_Yaml12Loader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                                    list("tTfF"))
_Yaml12Loader.add_implicit_resolver("tag:yaml.org,2002:float",
                                    re.compile(r"^[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)[eE][-+]?[0-9]+$"),
                                    list("-+0123456789."))


def parse_value(text):
    """One command-line value read as a YAML scalar: '0.5' -> 0.5, '4' -> 4, '1e-5' -> 1e-05, 'mnist1d' -> 'mnist1d'."""
    try:
        return yaml.load(text, Loader=_Yaml12Loader)  # a SafeLoader: builds plain values only
    except yaml.YAMLError:
        raise ParameterError("-p", text, "a YAML scalar such as 0.5, 4, true or mnist1d") from None


@dataclass(frozen=True)
class Point:
    """One run of the notebook: its id and the parameters it is given."""

    id: str
    parameters: dict


@dataclass(frozen=True)
class Grid:
    """Named axes of values; names sorted, SEED last, so the same grid always gives the same ids."""

    axes: dict  # name -> tuple of values

    @classmethod
    def from_axes(cls, axes):
        """A grid from {name: values}; each value list keeps its order and loses repeats."""
        if not axes:
            raise ParameterError("grid", {}, "at least one parameter to sweep: -p NAME VALUE..., --grid FILE "
                                 "or --seeds")
        for name, values in axes.items():
            if not isinstance(name, str) or not name.isidentifier():
                raise ParameterError("-p", name, "a notebook parameter name (a Python identifier such as ALPHA)")
            if name == "PROFILE":
                raise ParameterError("-p", name, "a parameter other than PROFILE: use --profile")
            if not values:
                raise ParameterError(name, [], "at least one value")
        ordered = sorted(axes, key=lambda name: (name == SEED, name))
        return cls({name: _unique(axes[name]) for name in ordered})

    @property
    def swept(self):
        """The names with more than one value."""
        return [name for name, values in self.axes.items() if len(values) > 1]

    def points(self):
        """Every combination of the axes' values, in a fixed order; ids are checked to be distinct."""
        points = [Point(point_id(dict(zip(self.axes, values))), dict(zip(self.axes, values)))
                  for values in itertools.product(*self.axes.values())]
        seen = {}
        for point in points:
            if point.id in seen:
                raise ParameterError("grid", [seen[point.id], point.parameters],
                                     "values that give distinct point ids (these differ only in characters "
                                     "a file name cannot hold)")
            seen[point.id] = point.parameters
        return points

    def validate(self):
        """Check every point with `kdlab.config.validate`; the first bad value raises ParameterError."""
        for point in self.points():
            config.validate(**point.parameters)


def point_id(parameters):
    """`NAME=value` pairs joined by `__`, safe as a file name on Linux, macOS and Windows."""
    text = SEPARATOR.join(f"{name}={_UNSAFE.sub('_', _value_text(value))}" for name, value in parameters.items())
    if len(text) > MAX_ID_CHARS:  # keep it readable, and unique through a hash of the whole
        text = text[:MAX_ID_CHARS - 13] + "~" + hashlib.sha1(text.encode()).hexdigest()[:12]
    return text


def _value_text(value):
    """A value as a point id writes it: 0.5, 4, 1e-05, mnist1d, true, null, [64,32]."""
    if isinstance(value, (int, float, str)) and not isinstance(value, bool):
        return repr(value) if isinstance(value, float) else str(value)
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def _unique(values):
    """Values in order, each once (by how it is written: 4 and 4.0 stay two points)."""
    seen, unique = set(), []
    for value in values:
        if _value_text(value) not in seen:
            seen.add(_value_text(value))
            unique.append(value)
    return tuple(unique)


def read_grid_file(path):
    """{'parameters': {NAME: [values]}, 'seeds': [..] or None, 'metric': str or None} from a YAML file."""
    path = Path(path)
    allowed = "a YAML mapping with 'parameters' (NAME: [values]) and optionally 'seeds' and 'metric'"
    if not path.is_file():
        raise ParameterError("--grid", str(path), "an existing YAML file")
    try:
        content = yaml.load(path.read_text(), Loader=_Yaml12Loader)
    except yaml.YAMLError as error:
        raise KdlabError(f"--grid {path}: not valid YAML: {error}") from None
    if not isinstance(content, dict) or not isinstance(content.get("parameters", {}), dict) \
            or set(content) - set(GRID_FILE_KEYS):
        raise ParameterError("--grid", str(path), allowed)
    parameters = {name: _as_list(values) for name, values in content.get("parameters", {}).items()}
    seeds = content.get("seeds")
    return {"parameters": parameters, "seeds": None if seeds is None else _as_list(seeds),
            "metric": content.get("metric")}


def _as_list(values):
    return list(values) if isinstance(values, (list, tuple)) else [values]


def build_grid(cli_parameters=(), grid_file=None, seeds=None):
    """The grid of a command: a grid file's axes, overridden by `-p NAME values`, plus `--seeds`.

    `cli_parameters` holds lists [NAME, value, ...] of strings, as argparse gives them.
    Returns (grid, metric named in the grid file or None).
    """
    from_file = read_grid_file(grid_file) if grid_file else {"parameters": {}, "seeds": None, "metric": None}
    axes = dict(from_file["parameters"])
    for entry in cli_parameters:
        if len(entry) < 2:
            raise ParameterError("-p", " ".join(entry), "a name and at least one value, e.g. -p ALPHA 0.1 0.5")
        axes[entry[0]] = [parse_value(text) for text in entry[1:]]
    seeds = seeds if seeds is not None else from_file["seeds"]
    if seeds is not None:
        if SEED in axes:
            raise ParameterError("--seeds", list(seeds), "given once: SEED is also swept with -p or in the grid file")
        axes[SEED] = [parse_value(seed) if isinstance(seed, str) else seed for seed in seeds]
    return Grid.from_axes(axes), from_file["metric"]


def notebook_parameters(notebook):
    """Names assigned in the notebook's cell tagged `parameters`; None if it has no such cell."""
    cells = json.loads(Path(notebook).read_text()).get("cells", [])
    for cell in cells:
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
            try:
                tree = ast.parse(source)
            except SyntaxError:  # IPython magics: papermill still injects; trust the names given
                return None
            return [target.id for node in tree.body if isinstance(node, (ast.Assign, ast.AnnAssign))
                    for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
                    if isinstance(target, ast.Name)]
    return None


def check_names(grid, notebook):
    """Every swept name must be a parameter of the notebook (a typo such as ALHPA would silently do nothing)."""
    known = notebook_parameters(notebook)
    if known is None:
        return
    for name in grid.axes:
        if name not in known:
            raise ParameterError("-p", name, f"a parameter of {Path(notebook).name}: one of {', '.join(known)}")
