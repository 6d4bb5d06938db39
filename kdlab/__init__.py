"""kdlab: a notebook-based teaching kit on meta-learning for knowledge distillation.

The notebooks import a handful of names from here; everything else lives in one module per concern
(config, data, models, losses, meta, methods, train, stats, viz, widgets, results).
"""
__version__ = "0.1.0"

from .config import by_profile, resolve_profile, validate  # noqa: E402
from .env import Run, setup  # noqa: E402


def record(name, value, **kwargs):
    """Record one of the notebook's key numbers (see kdlab.results.record)."""
    from .results import record as _record

    return _record(name, value, **kwargs)


__all__ = ["__version__", "setup", "Run", "validate", "by_profile", "resolve_profile", "record"]
