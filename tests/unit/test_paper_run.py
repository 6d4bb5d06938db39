"""`PaperRun`, a notebook's `full` branch on a recipe: the fit options and knobs are the recipe's (the paper's
step decay included), a dry run serves FakeData of the real shape and random teachers of the real architecture,
and no `full` branch writes a number of its own where the recipe has one."""
import re
from types import SimpleNamespace

import nbformat
import pytest
import torch

from kdlab import recipes
from kdlab.errors import ParameterError
from kdlab.reproduce.notebook import DRY_BATCH, PaperRun

from ..notebooks.conftest import NOTEBOOKS


def _run(dry):
    return SimpleNamespace(seed=0, device=torch.device("cpu"), dry_run=dry)


def test_fit_options_and_knobs_are_the_recipe():
    paper = PaperRun("metadistil_resnet56_resnet20", _run(False))
    s = recipes.get("metadistil_resnet56_resnet20")
    options = paper.fit_options()
    assert {k: options[k] for k in ("epochs", "lr", "batch_size", "optimizer", "momentum", "weight_decay")} == \
        {"epochs": 240, "lr": s.lr, "batch_size": 64, "optimizer": "sgd", "momentum": 0.9, "weight_decay": 5e-4}
    factor = options["schedule"]
    assert [factor(e) for e in (0, 149, 150, 180, 239)] == pytest.approx([1, 1, 0.1, 0.01, 0.001])
    assert options["augment"] is not None and paper.knobs == s.knobs
    assert paper.fit_options(eval_every=10)["eval_every"] == 10
    assert list(paper.seeds(5)) == [5, 6, 7]


def test_dry_run_serves_fakedata_of_the_real_shape_and_the_real_architectures():
    paper = PaperRun("kd_resnet32x4_resnet8x4", _run(True))
    data = paper.data()
    assert tuple(data.x_train.shape[1:]) == (3, 32, 32) and data.num_classes == 100
    assert paper.fit_options()["epochs"] == 1 and paper.batch_size == DRY_BATCH and len(paper.seeds(0)) == 2
    teacher, student = paper.teacher(data), paper.student(0)
    assert type(teacher).__name__ == type(student).__name__ == "CifarResNet"
    assert teacher.feature_channels[1:4] == [64, 128, 256] and student.depth == 8 and teacher.depth == 32
    other = paper.teacher(data, arch="vgg8")
    assert type(other).__name__ == "VGG"


def test_episodic_recipe_on_another_few_shot_set():
    paper = PaperRun("tsmd_miniimagenet_5w1s", _run(True), dataset="cifar_fs")
    assert paper.setting.dataset == "cifar_fs" and paper.setting.image_shape == (3, 32, 32)
    assert paper.setting.meta_batch == 1 and paper.iterations == 2 and paper.test_steps == 1
    assert PaperRun("tsmd_miniimagenet_5w1s", _run(False)).test_steps == 10
    with pytest.raises(ParameterError, match="dataset"):
        PaperRun("kd_vgg13_vgg8", _run(False), dataset="cifar_fs")


# numbers a full branch must take from the recipe, written as keyword arguments (`batch_size` and `beta` are
# left out: an evaluation batch and the baselines' beta = 0 are the notebook's own)
OWN_NUMBERS = re.compile(r"\b(epochs|lr|weight_decay|momentum|iterations|meta_batch|inner_lr|meta_lr|teacher_lr|"
                         r"buffer_size|temperature|alpha)\s*=\s*[0-9]")


@pytest.mark.parametrize("path", [p for p in NOTEBOOKS if not p.name.startswith("00")], ids=lambda p: p.stem)
def test_full_branches_take_their_numbers_from_the_recipes(path):
    cells = [c.source for c in nbformat.read(path, as_version=4).cells
             if c.cell_type == "code" and 'run.profile == "full"' in c.source]
    assert cells, f"{path.name} has no full branch"
    for source in cells:
        assert "PaperRun(" in source, f"{path.name}: a full branch that does not read kdlab.recipes"
        names = re.findall(r'PaperRun\(f?"([^"]+)"', source)
        for name in names:
            if "{" not in name:
                recipes.get(name)
        own = OWN_NUMBERS.findall(source)
        assert not own, f"{path.name}: the full branch sets {own} itself instead of reading the recipe"


def test_a_dry_run_takes_the_smoke_budgets_of_the_small_sections():
    from kdlab.env import Run

    values = {"smoke": 1, "class": 2, "full": 3}
    common = dict(seed=0, device=torch.device("cpu"), data_root=None, threads=1, headless=True)
    assert Run("full", **common, dry_run=True).pick(values) == 1
    assert Run("full", **common).pick(values) == 3 and Run("class", **common).pick(values) == 2


def test_shortened_runs_keep_the_share_of_epoch_counted_knobs():
    from kdlab.reproduce.models import run_knobs

    assert run_knobs(recipes.get("dkd_resnet56_resnet20"), 24)["warmup_epochs"] == 2        # 20 of 240
    assert run_knobs(recipes.get("ctkd_resnet56_resnet20"), 24)["curriculum_epochs"] == 1    # 10 of 240
    assert run_knobs(recipes.get("ctkd_resnet56_resnet20"), 240)["curriculum_epochs"] == 10
    assert run_knobs(recipes.get("metadistil_resnet56_resnet20"), 24)["freeze_epochs"] == 15
