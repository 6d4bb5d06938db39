"""The papers' recipes as data: every headline setting is there, with the paper's number, and everything it
names exists in the kit's registries (method, models, dataset, the method's constructor knobs)."""
import inspect

import pytest

from kdlab import recipes
from kdlab.data import registry as data_registry
from kdlab.errors import ParameterError
from kdlab.methods import registry as method_registry
from kdlab.models import available as model_names

# the list, checked against the paper texts (see each setting's `source`)
HEADLINE = {
    "kd_resnet56_resnet20": 70.66, "kd_resnet32x4_resnet8x4": 73.33, "kd_wrn40_2_wrn16_2": 74.92,
    "kd_vgg13_vgg8": 72.98, "metadistil_resnet56_resnet20": 71.25, "metadistiller_wrn16_1": 70.30,
    "mmkd_vgg13_vgg8": 74.86, "mmkd_resnet32x4_mobilenetv2": 69.70, "mmkd_resnet32x4_vgg8": 75.66,
    "mmkd_wrn40_2_mobilenetv2": 71.23, "mmkd_wrn40_2_wrn40_1": 75.61, "tsmd_miniimagenet_5w1s": 51.45,
    "tsmd_miniimagenet_5w5s": 63.80, "maml_omniglot_5w1s": 98.7, "maml_miniimagenet_5w1s": 48.70,
    "preprint_cifar10_fd_adapt": 88.63, "metadistiller_resnet18": 79.05, "mmkd_resnet20x4_shufflenetv1": 77.76,
}
TORCHVISION = {"torchvision:mobilenet_v2", "torchvision:resnet101"}


def test_every_headline_setting_with_the_papers_number():
    assert set(HEADLINE) <= set(recipes.names())
    for name, number in HEADLINE.items():
        assert recipes.get(name).paper_number == number, name


@pytest.mark.parametrize("name", recipes.names())
def test_setting_is_complete_and_runnable_by_the_kit(name):
    s = recipes.get(name)
    cls = method_registry.get(s.method)
    assert s.dataset in data_registry.available(), s.dataset
    for model in filter(None, (s.student, s.teacher)):
        assert model in model_names() or model in TORCHVISION, model
    assert s.source and s.metric and s.paper
    assert s.optimizer in ("sgd", "adam") and s.lr > 0 and s.weight_decay >= 0
    if s.episodic:
        assert min(s.ways, s.shots, s.queries, s.meta_batch, s.iterations, s.test_episodes) >= 1
    else:
        assert s.epochs >= 1 and s.batch_size >= 1
        assert all(0 < m < s.epochs for m in s.milestones) if s.schedule == "step" else True
    params = inspect.signature(cls.__init__).parameters
    if s.method == "tsmd":  # TSMD passes its adaptation knobs on to tsmd_settings.settings
        from kdlab.methods.tsmd_settings import settings
        params = {**params, **inspect.signature(settings).parameters}
    unknown = set(s.knobs) - set(params)
    assert not unknown, f"{name}: {unknown} are not constructor arguments of {cls.__name__}"


def test_settings_are_frozen_and_the_table_lists_them():
    s = recipes.get("kd_vgg13_vgg8")
    with pytest.raises(Exception):
        s.lr = 1.0
    table = recipes.table()
    assert all(name in table for name in recipes.names())


def test_unknown_setting_names_the_allowed_ones():
    with pytest.raises(ParameterError, match="kd_resnet56_resnet20"):
        recipes.get("kd_resnet18")
