"""kdlab: a notebook-based teaching kit on meta-learning for knowledge distillation.

The notebooks import a handful of names from here; everything else lives in one module per concern
(config, data, models, losses, meta, methods, train, stats, viz, widgets, results). `import kdlab` stays
light (no torch) so the command line and tiny kernels start fast; `kdlab.setup` imports torch on first use.
"""
__version__ = "0.1.0"

from .config import by_profile, resolve_profile, validate  # noqa: E402


def setup(*args, **kwargs):
    """Seed, pick threads and device, locate data, set the plot style, print the banner (kdlab.env.setup)."""
    from .env import setup as _setup

    return _setup(*args, **kwargs)


def record(name, value, **kwargs):
    """Record one of the notebook's key numbers (see kdlab.results.record).

    Returns None, so a notebook cell that ends with `kdlab.record(...)` shows only the "recorded:" line.
    """
    from .results import record as _record

    _record(name, value, **kwargs)


def __getattr__(name):
    if name == "Run":
        from .env import Run

        return Run
    raise AttributeError(f"module 'kdlab' has no attribute {name!r}")


__all__ = ["__version__", "setup", "Run", "validate", "by_profile", "resolve_profile", "record"]
