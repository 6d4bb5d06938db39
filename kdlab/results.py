"""Record a notebook's key numbers so that runs, sweeps and graders can read them back.

`record("kd_accuracy", 91.3, fmt=".1f")` inside a notebook

1. keeps the value in this process (`all_results()`),
2. rewrites the JSON file named by `KDLAB_RESULTS_JSON` atomically, when the runner set it; the
   runner copies that file into the executed notebook's `metadata["kdlab"]` (a kernel cannot edit
   its own notebook file),
3. displays one output with the mime type `application/vnd.kdlab.results+json` and a text line
   "recorded: kd_accuracy = 91.3", so results can also be scraped from notebooks executed by other
   tools (nbval, JupyterLab).

`read_results("runs/class/01_knowledge_distillation.ipynb")` returns the numbers again, from the
metadata if the runner wrote them, else from those outputs.

Values are numbers, strings, booleans, None and small lists or dicts of them; stats objects such as
`mean_ci(...)` are stored as their `as_dict()`. JSON has no NaN, so a NaN or infinite number is stored as
the string "nan" / "inf" / "-inf", its name is listed under "not_finite", and it is read back as a float.
"""
import json
import math
import numbers
import os

from .atomic import write_bytes
from .errors import ParameterError

MIME_TYPE = "application/vnd.kdlab.results+json"
RESULTS_JSON_ENV = "KDLAB_RESULTS_JSON"
MAX_JSON_CHARS = 20_000  # "key numbers": a curve of a few hundred points fits, a weight matrix does not

_values = {}
_formats = {}

_NOT_FINITE_TEXT = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def record(name, value, *, fmt=None):
    """Record one key number of this notebook under `name`; returns `value` unchanged.

    `fmt` is a format spec used when the value is shown, e.g. ".1f" or ".1%".
    """
    if not isinstance(name, str) or not name.strip():
        raise ParameterError("name", name, "a non-empty string such as 'kd_accuracy'")
    plain = _to_plain(value, name)
    if fmt is not None:
        _check_format(fmt, plain)
    encoded, not_finite = _encode(plain)
    size = len(json.dumps(encoded))
    if size > MAX_JSON_CHARS:
        raise ParameterError(name, f"<{type(value).__name__}, {size} characters as JSON>",
                             f"at most {MAX_JSON_CHARS} characters as JSON: record summary numbers and save "
                             "large arrays to a file under runs/")
    _values[name] = plain
    if fmt is None:
        _formats.pop(name, None)
    else:
        _formats[name] = fmt
    _write_results_file()
    _show(name, plain, encoded, fmt, not_finite)
    return value


def all_results():
    """Every value recorded in this process so far, by name (NaN as float NaN)."""
    return dict(_values)


def clear():
    """Forget the recorded values (and empty the runner's results file, if there is one)."""
    _values.clear()
    _formats.clear()
    _write_results_file()


def format_value(value, fmt=None):
    """A value as shown to a person: with `fmt` if given, numbers to 4 significant digits otherwise."""
    if fmt is not None:
        try:
            return fmt.format(value) if "{" in fmt else format(value, fmt)
        except (TypeError, ValueError):
            pass
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key}: {format_value(v)}" for key, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(format_value(v) for v in value) + "]"
    return str(value)


def payload():
    """The current results as stored in JSON and notebook metadata: results, formats, not_finite."""
    encoded, not_finite = {}, []
    for name, value in _values.items():
        encoded[name], bad = _encode(value)
        if bad:
            not_finite.append(name)
    return {"results": encoded, "formats": dict(_formats), "not_finite": not_finite}


def decode(stored):
    """Turn a stored payload ({"results", "not_finite", ...}) back into {name: value}."""
    not_finite = set(stored.get("not_finite", ()))
    return {name: (_decode(value) if name in not_finite else value)
            for name, value in stored.get("results", {}).items()}


def read_payload(notebook_path):
    """The stored payload of an executed notebook: its metadata, else scraped from its outputs."""
    import nbformat

    notebook = nbformat.read(str(notebook_path), as_version=4)
    stored = notebook.metadata.get("kdlab", {})
    if "results" in stored:
        return {"results": dict(stored["results"]), "formats": dict(stored.get("formats", {})),
                "not_finite": list(stored.get("not_finite", []))}
    scraped = {"results": {}, "formats": {}, "not_finite": []}
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            entry = output.get("data", {}).get(MIME_TYPE)
            if output.get("output_type") not in ("display_data", "execute_result") or entry is None:
                continue
            name = entry["name"]
            scraped["results"][name] = entry["value"]
            scraped["formats"].pop(name, None)
            if entry.get("fmt") is not None:
                scraped["formats"][name] = entry["fmt"]
            if entry.get("not_finite"):
                scraped["not_finite"].append(name)
    return scraped


def read_results(notebook_path):
    """The recorded values of an executed notebook, by name (see `read_payload`)."""
    return decode(read_payload(notebook_path))


# --------------------------------------------------------------------------- helpers


def _to_plain(value, name):
    """Convert to JSON-able Python values (NaN kept as float), or raise one clear ParameterError."""
    if hasattr(value, "as_dict"):
        value = value.as_dict()
    elif hasattr(value, "tolist") and not isinstance(value, (str, bytes)):  # numpy / torch
        value = value.tolist()
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, (list, tuple)):
        return [_to_plain(item, name) for item in value]
    if isinstance(value, dict) and all(isinstance(key, str) for key in value):
        return {key: _to_plain(item, name) for key, item in value.items()}
    raise ParameterError(name, value, "a number, string, bool, None, or a small list or dict (str keys) of them")


def _check_format(fmt, value):
    if not isinstance(fmt, str):
        raise ParameterError("fmt", fmt, "a format spec string such as '.1f' or '.1%'")
    if isinstance(value, numbers.Number):
        try:
            fmt.format(value) if "{" in fmt else format(value, fmt)
        except (ValueError, TypeError, IndexError, KeyError):
            raise ParameterError("fmt", fmt, f"a format spec that can show {value!r}, such as '.1f' or '.1%'") from None


def _encode(value):
    """(JSON-safe value, whether it held a NaN or infinity)."""
    if isinstance(value, float) and not math.isfinite(value):
        return ("nan" if math.isnan(value) else "inf" if value > 0 else "-inf"), True
    if isinstance(value, list):
        pairs = [_encode(item) for item in value]
        return [item for item, _ in pairs], any(bad for _, bad in pairs)
    if isinstance(value, dict):
        pairs = {key: _encode(item) for key, item in value.items()}
        return {key: item for key, (item, _) in pairs.items()}, any(bad for _, bad in pairs.values())
    return value, False


def _decode(value):
    if isinstance(value, str) and value in _NOT_FINITE_TEXT:
        return _NOT_FINITE_TEXT[value]
    if isinstance(value, list):
        return [_decode(item) for item in value]
    if isinstance(value, dict):
        return {key: _decode(item) for key, item in value.items()}
    return value


def _write_results_file():
    """Rewrite the runner's results file, if any, atomically (`kdlab.atomic`, which needs no torch)."""
    target = os.environ.get(RESULTS_JSON_ENV)
    if target:
        write_bytes(target, json.dumps(payload(), indent=1, allow_nan=False).encode())


def _show(name, value, encoded, fmt, not_finite):
    """Show "recorded: name = value"; in a kernel, with the machine-readable output next to it."""
    line = f"recorded: {name} = {format_value(value, fmt)}"
    if not_finite:
        line += "  (warning: not a finite number; did training diverge?)"
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:
        get_ipython = None
    if get_ipython is None or get_ipython() is None:
        print(line)
        return
    entry = {"name": name, "value": encoded, "fmt": fmt, "not_finite": not_finite}
    display({MIME_TYPE: entry, "text/plain": line}, raw=True)
