"""`kdlab reproduce`: the dry run of every setting (CI: two steps each, the smallest batch), an interrupted run
that resumes to the same weights as an uninterrupted one, weights-only checkpoints, the table rows, and one
clear error for bad input."""
import csv
import dataclasses
import math

import pytest
import torch

from kdlab import recipes, reproduce
from kdlab.cli import main
from kdlab.errors import DatasetUnavailableError, ParameterError


# TSMD 5-shot is TSMD 1-shot's code path with 25 support images: a ResNet at 84x84 through the inner loop costs
# about 25 s a step on one shared core, so CI dry-runs the 1-shot setting only
CI_SETTINGS = [name for name in recipes.names() if name != "tsmd_miniimagenet_5w5s"]


def test_dry_run_of_every_setting(tmp_path):
    rows, costs = reproduce.reproduce(CI_SETTINGS, dry_run=True, steps=2, batch=2, quick=True, out=tmp_path,
                                      log=lambda *a: None)
    assert [r["setting"] for r in rows] == CI_SETTINGS == [c["setting"] for c in costs]
    for cost in costs:
        assert cost["resumed"] is True, cost          # every setting was interrupted and resumed
        assert cost["step_ms"] > 0 and cost["peak_mb"] > 0 and math.isfinite(cost["projected_hours"])
    for row in rows:
        assert row["comparable"] == "no" and math.isfinite(row["ours_mean"])
    table = list(csv.DictReader((tmp_path / "reproduced.csv").open()))
    assert [r["setting"] for r in table] == CI_SETTINGS
    assert (tmp_path / "reproduced.md").read_text().count("\n") == len(CI_SETTINGS) + 2
    assert (tmp_path / "dry_run.md").exists()


def _weights(method):
    return {k: v.clone() for k, v in method.model.state_dict().items()}


def test_interrupted_run_resumes_to_the_same_weights(tmp_path):
    setting = reproduce.dry_setting(recipes.get("kd_resnet56_resnet20"), steps=2, batch=4)
    data = reproduce.load_data(setting, "cpu", dry_run=True, steps=2, batch=4)
    common = dict(seed=3, length=3, checkpoint_every=1, dry_run=True, progress=False)
    whole, _, resumed = reproduce.train(setting, data, folder=tmp_path / "whole", **common)
    assert not resumed
    with pytest.raises(KeyboardInterrupt):
        reproduce.train(setting, data, folder=tmp_path / "cut", interrupt_after=1, **common)
    checkpoint = torch.load(tmp_path / "cut" / reproduce.CHECKPOINT, weights_only=True)  # weights only
    assert checkpoint["done"] == 1 and len(checkpoint["records"]) == 1
    again, history, resumed = reproduce.train(setting, data, folder=tmp_path / "cut", **common)
    assert resumed and history.epochs_done == 3
    a, b = _weights(whole), _weights(again)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_shortened_run_row_is_not_comparable():
    s = recipes.get("kd_vgg13_vgg8")
    results = [{"acc": 70.0 + i, "seconds": 10.0, "device": "cpu"} for i in range(3)]
    row = reproduce.summarise(s, results, comparable=False, epochs=5)
    assert row["comparable"] == "no" and row["ours_mean"] == 71.0 and row["difference"] == round(71.0 - 72.98, 2)
    assert row["ours_half_width"] > 0 and row["seeds"] == 3


@pytest.mark.parametrize("argv, match", [
    (["reproduce", "kd_resnet18", "--dry-run"], "one of kd_resnet56_resnet20"),
    (["reproduce", "kd_vgg13_vgg8", "--epochs", "0"], "--epochs"),
    (["reproduce", "kd_vgg13_vgg8", "--batch", "8"], "--dry-run"),
])
def test_bad_input_gets_one_clear_message(argv, match, capsys):
    assert main(argv) == 2
    assert match in capsys.readouterr().err


def test_missing_dataset_offline_names_the_fix(tmp_path, monkeypatch):
    from kdlab.data import cifar

    class Offline:
        url, filename, base_folder = "https://example/cifar-100.tar.gz", "cifar-100.tar.gz", "cifar-100-python"

        def __init__(self, *args, **kwargs):
            raise OSError("network unreachable")

    monkeypatch.setattr(cifar, "_torchvision_class", lambda name: Offline)
    monkeypatch.setenv("KDLAB_DATA", str(tmp_path))
    with pytest.raises(DatasetUnavailableError, match="need no download"):
        reproduce.reproduce(["kd_vgg13_vgg8"], out=tmp_path / "out", device="cpu", log=lambda *a: None)


def test_unknown_setting_is_a_parameter_error():
    with pytest.raises(ParameterError, match="SETTING"):
        reproduce.check_request(["nope"])


def test_settings_by_seeds_grid_through_a_dask_cluster(tmp_path):
    """`--executor dask --scheduler ...`: each setting x seed is one task on the cluster's workers; the rows
    equal those of the local executor (same seeds, same FakeData, same path)."""
    distributed = pytest.importorskip("distributed")
    # one task at a time per worker, as the command asks (`dask worker --nthreads 1`): a job seeds torch's
    # global generator, which the threads of one worker process would share
    cluster = distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, protocol="tcp",
                                       host="127.0.0.1", dashboard_address=None)
    settings = ["maml_omniglot_5w1s", "kd_resnet56_resnet20"]
    common = dict(seeds=2, dry_run=True, steps=1, batch=2, quick=True, log=lambda *a: None)
    try:
        rows, _ = reproduce.reproduce(settings, executor="dask", scheduler=cluster.scheduler_address,
                                      out=tmp_path / "dask", **common)
    finally:
        cluster.close()
    local, _ = reproduce.reproduce(settings, out=tmp_path / "local", **common)
    assert [r["setting"] for r in rows] == settings and all(r["seeds"] == 2 for r in rows)
    assert [r["ours_mean"] for r in rows] == [r["ours_mean"] for r in local]


def test_interrupted_mmkd_run_resumes_with_its_buffer_and_meta_optimiser(tmp_path):
    """MMKD's hard buffer and phi's Adam are part of the checkpoint (`Method.checkpointed`): a resumed run
    ends with the same student and meta-weight nets as an uninterrupted one."""
    setting = reproduce.dry_setting(recipes.get("mmkd_vgg13_vgg8"), steps=2, batch=4)
    setting = dataclasses.replace(setting, knobs={**setting.knobs, "meta_every": 1, "buffer_size": 4})
    data = reproduce.load_data(setting, "cpu", dry_run=True, steps=2, batch=4)
    common = dict(seed=1, length=3, checkpoint_every=1, dry_run=True, progress=False)
    whole, _, _ = reproduce.train(setting, data, folder=tmp_path / "whole", **common)
    with pytest.raises(KeyboardInterrupt):
        reproduce.train(setting, data, folder=tmp_path / "cut", interrupt_after=1, **common)
    checkpoint = torch.load(tmp_path / "cut" / reproduce.CHECKPOINT, weights_only=True)
    again, _, resumed = reproduce.train(setting, data, folder=tmp_path / "cut", **common)
    assert resumed
    for part, a, b in (("student", whole.wrapper, again.wrapper), ("meta-weight nets", whole.nets, again.nets)):
        sa, sb = a.state_dict(), b.state_dict()
        differ = [k for k in sa if not torch.equal(sa[k], sb[k])]
        assert not differ, f"the resumed run's {part} differ from the uninterrupted run's: {differ[:3]}"
    assert "buffer" in checkpoint["method"] and "meta_optimizer" in checkpoint["method"]
