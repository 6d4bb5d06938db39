"""Every notebook's `full` branch runs to the end: the notebook in PROFILE="full" with KDLAB_DRY_RUN=1, so its
small-data sections take smoke budgets and its paper branch reads its recipe from `kdlab.recipes` and trains a
few steps on FakeData of the real shapes with the real architectures (`kdlab.reproduce.notebook.PaperRun`).
The branch must say which recipe it runs and record its paper-scale key number."""
import os

import pytest

from kdlab.results import read_results
from kdlab.runner import execute_notebook

from .conftest import NOTEBOOK_DIR

# notebook -> (the recipes its full branch runs, a key number only the full branch records, extra parameters)
FULL_BRANCHES = {
    "01_knowledge_distillation": (["kd_resnet32x4_resnet8x4"], "cifar100_kd_minus_ce", {}),
    "02_maml": (["maml_omniglot_5w1s"], "omniglot_1shot_acc", {"DATASET": "omniglot"}),
    "03_metadistil": (["metadistil_resnet56_resnet20"], "cifar100_meta_minus_kd90", {}),
    "04_metadistiller": (["metadistiller_wrn16_1"], "cifar100_wrn16_1_md_minus_sd_final", {}),
    "05_mmkd": (["mmkd_vgg13_vgg8"], "cifar100_mmkd_minus_aver", {}),
    "06_tsmd": (["tsmd_miniimagenet_5w1s"], "full_cifar_fs_1shot", {}),
    "07_meta_feature_distillation": (["preprint_cifar10_fd_adapt"], "cifar10_final_acc_baseline", {}),
    "08_comparison": (["kd_resnet32x4_resnet8x4"], "cifar100_accuracy", {}),
    "09_learning_alpha_and_temperature": (["ctkd_resnet56_resnet20"], "cifar100_ctkd_minus_kd", {}),
}


def full_branch_output(executed_path):
    import nbformat

    nb = nbformat.read(executed_path, as_version=4)
    texts = []
    for cell in nb.cells:
        if cell.cell_type == "code" and "PaperRun(" in cell.source:
            texts += [out.get("text", "") for out in cell.get("outputs", []) if out.get("output_type") == "stream"]
    return "".join(texts)


@pytest.mark.notebook
@pytest.mark.parametrize("stem", list(FULL_BRANCHES))
def test_full_branch_runs_on_its_recipe(stem, tmp_path):
    recipes, key, parameters = FULL_BRANCHES[stem]
    env = {**os.environ, "KDLAB_DRY_RUN": "1", "KDLAB_HEADLESS": "1"}
    out = tmp_path / f"{stem}.ipynb"
    result = execute_notebook(NOTEBOOK_DIR / f"{stem}.ipynb", out, profile="full", parameters=parameters, env=env,
                              execution_timeout=400, outer_timeout=900)
    assert result.status == "ok", f"{stem}: {result.status}: {result.error}"
    printed = full_branch_output(out)
    assert "DRY RUN" in printed, f"{stem}: the full branch did not run as a dry run:\n{printed[:2000]}"
    for name in recipes:
        assert f"recipe {name}" in printed, f"{stem}: recipe {name} not announced"
    recorded = read_results(out)
    assert key in recorded, f"{stem}: the full branch recorded no {key!r}; recorded {sorted(recorded)}"
    print(f"{stem}: full-profile dry run in {result.seconds:.1f} s")


def test_dry_run_flag_is_checked_and_only_acts_in_the_full_profile(monkeypatch):
    from kdlab.env import dry_run
    from kdlab.errors import ParameterError

    monkeypatch.setenv("KDLAB_DRY_RUN", "1")
    assert dry_run("full") and not dry_run("class") and not dry_run("smoke")
    monkeypatch.setenv("KDLAB_DRY_RUN", "yes")
    with pytest.raises(ParameterError, match="KDLAB_DRY_RUN"):
        dry_run("full")
