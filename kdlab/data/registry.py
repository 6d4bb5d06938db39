"""One registry of datasets: a name -> a loader, whether it works offline, and what kind of data it is.

Loader modules register themselves with the `register` decorator:

    @register("digits", offline=True, description="...")
    def load_digits(root=None, device="cpu", *, seed=0, ...): ...

The registry imports those modules only when asked for names (never at import time), so
`import kdlab.data` stays light and a loader module may import `register` from here without a cycle.
"""
import importlib
import inspect
import warnings
from dataclasses import dataclass

from ..errors import ParameterError
from .base import resolve_device

KINDS = ("classification", "fewshot")

# imported on first use; missing optional modules (few-shot sets) are skipped
_BUILTIN_MODULES = ("kdlab.data.digits", "kdlab.data.mnist1d", "kdlab.data.cifar")
_OPTIONAL_MODULES = ("kdlab.data.glyphs", "kdlab.data.fewshot_online")

_ENTRIES = {}


@dataclass(frozen=True)
class DatasetEntry:
    """What the registry knows about one dataset."""

    name: str
    loader: object
    offline: bool
    description: str
    kind: str


def register(name, *, offline: bool, description: str, kind="classification"):
    """Decorator: register `loader(root=None, device="cpu", **options)` under `name`."""
    if kind not in KINDS:
        raise ParameterError("kind", kind, "one of " + ", ".join(repr(k) for k in KINDS))

    def decorator(loader):
        known = _ENTRIES.get(name)
        # re-importing the same module (autoreload) re-registers the same loader: allowed
        if known is not None and _origin(known.loader) != _origin(loader):
            raise ValueError(f"dataset {name!r} is already registered by {known.loader.__module__}")
        _ENTRIES[name] = DatasetEntry(name, loader, bool(offline), description, kind)
        return loader

    return decorator


def _origin(loader):
    return f"{loader.__module__}.{loader.__qualname__}"


def _import_loaders():
    for module in _BUILTIN_MODULES:
        importlib.import_module(module)
    for module in _OPTIONAL_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as error:
            if error.name != module:  # the module exists but one of its own imports is missing
                warnings.warn(f"kdlab: skipped the datasets of {module}: {error}", stacklevel=3)
        except ImportError as error:
            warnings.warn(f"kdlab: skipped the datasets of {module}: {error}", stacklevel=3)


def entries(*, offline_only=False, kind=None):
    """The registered datasets: offline ones first, then by kind, then by name."""
    _import_loaders()
    chosen = [e for e in _ENTRIES.values() if (e.offline or not offline_only) and kind in (None, e.kind)]
    return sorted(chosen, key=lambda e: (not e.offline, KINDS.index(e.kind), e.name))


def available(offline_only=False, kind=None):
    """Names of the registered datasets (offline ones first); `kind` is 'classification' or 'fewshot'."""
    return [entry.name for entry in entries(offline_only=offline_only, kind=kind)]


def describe(offline_only=False, kind=None):
    """One line per dataset: name, kind, offline or download, description."""
    return "\n".join(
        f"{e.name:<16} {e.kind:<15} {'offline' if e.offline else 'download':<9} {e.description}"
        for e in entries(offline_only=offline_only, kind=kind)
    )


def _quoted(names):
    return ", ".join(repr(n) for n in names)


def check_name(name, kind=None):
    """Return `name` if it is a registered dataset (of `kind`, if given), else raise one ParameterError."""
    names = available(kind=kind)
    if isinstance(name, str) and name in names:
        return name
    offline = available(offline_only=True, kind=kind)
    raise ParameterError("DATASET", name, f"one of {_quoted(names)} (offline: {_quoted(offline)})")


def get(name):
    """The registry entry of `name`."""
    return _ENTRIES[check_name(name)]


def load(name, root=None, device="cpu", **options):
    """Load dataset `name` (a `DataSplits` for classification sets) with the loader's `options`.

    `root` is the data root (default: `KDLAB_DATA` or the repository's `data/`); `device` is where the
    tensors live ('auto': CUDA, else MPS, else CPU). An option the loader does not take is reported with
    the options it does take.
    """
    entry = get(name)
    signature = inspect.signature(entry.loader)
    takes_any = any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values())
    if not takes_any:
        allowed = [p for p in signature.parameters if p not in ("root", "device")]
        for option in options:
            if option not in allowed:
                takes = f"one of {_quoted(allowed)}" if allowed else "none"
                raise ParameterError(option, options[option], f"an option that {name!r} takes: {takes}")
    return entry.loader(root=root, device=resolve_device(device), **options)
