"""Every method by name, with its card: the paper, its equations, what is detached, first or second order,
and which loop trains it ("epochs": `kdlab.train.fit`; "episodes": `kdlab.train.fit_episodes`).

    from kdlab.methods import registry
    registry.names()                 # ['ce', 'kd', 'metadistil', ...]
    registry.card("metadistil")      # {'paper': ..., 'equations': ..., 'detached': ..., 'order': ...}
    method = registry.get("kd")(student, teacher, alpha=0.9, temperature=4.0)

Modules are imported on first use, so listing names never loads torch-heavy code.
"""
import importlib

from ..errors import ParameterError

METHODS = {
    "ce": "kd:Supervised",
    "kd": "kd:KD",
    "metadistil": "metadistil:MetaDistil",
    "metadistiller": "metadistiller:MetaDistiller",
    "mmkd": "mmkd:MMKD",
    "feature_meta": "feature_meta:FeatureMeta",
    "maml": "maml:MAML",
    "tsmd": "tsmd:TSMD",
    "dkd": "dkd:DKD",
    "ctkd": "ctkd:CTKD",
    "meta_alpha_temperature": "meta_alpha_temperature:MetaAlphaTemperature",
}
CARD_FIELDS = ("paper", "equations", "detached", "order", "loop")


def names():
    return list(METHODS)


def get(name):
    """The Method class registered under `name`."""
    if name not in METHODS:
        raise ParameterError("method", name, "one of " + ", ".join(map(repr, METHODS)))
    module, cls = METHODS[name].split(":")
    return getattr(importlib.import_module(f"{__package__}.{module}"), cls)


def card(name):
    """The method's card: a dict with at least the fields of CARD_FIELDS."""
    return dict(get(name).card)


def cards():
    return {name: card(name) for name in METHODS}
