import math

import pytest

import kdlab
from kdlab import config
from kdlab.errors import ParameterError


@pytest.mark.parametrize("name,value,fragment", [
    ("PROFILE", "fast", "one of 'smoke', 'class', 'full'"),
    ("TEMPERATURE", 0, "(0, 1000]"),
    ("TEMPERATURE", -2.0, "(0, 1000]"),
    ("TEMPERATURE", math.inf, "(0, 1000]"),
    ("TEMPERATURE", 1e4, "rounding noise"),
    ("ALPHA", 1.5, "[0, 1]"),
    ("ALPHA", -0.1, "[0, 1]"),
    ("ALPHA", "0.5", "[0, 1]"),
    ("SEED", -1, "integer >= 0"),
    ("SEED", 1.5, "integer >= 0"),
    ("DEVICE", "gpu", "'auto', 'cpu'"),
    ("INNER_STEPS", -1, "integer >= 0"),
    ("INNER_LR", 0, "> 0"),
    ("META_LR", -1e-3, "> 0"),
])
def test_bad_parameter_gets_one_clear_message(name, value, fragment):
    with pytest.raises(ParameterError) as info:
        config.check(name, value)
    message = str(info.value)
    assert message.startswith(f"{name}={value!r}"), message
    assert fragment in message


@pytest.mark.parametrize("name,value", [
    ("PROFILE", "smoke"), ("ALPHA", 0), ("ALPHA", 1), ("TEMPERATURE", 0.5), ("SEED", 0),
    ("DEVICE", "cuda:1"), ("INNER_STEPS", 0),
])
def test_good_parameters_pass_through(name, value):
    assert config.check(name, value) == value


def test_environment_variable_overrides_profile(monkeypatch):
    monkeypatch.setenv("KDLAB_PROFILE", "smoke")
    assert config.resolve_profile("class") == "smoke"
    monkeypatch.setenv("KDLAB_PROFILE", "fast")
    with pytest.raises(ParameterError, match="PROFILE='fast'"):
        config.resolve_profile("class")
    monkeypatch.delenv("KDLAB_PROFILE")
    assert config.resolve_profile("full") == "full"


def test_by_profile_falls_back_to_the_next_smaller_profile():
    values = {"smoke": 1, "class": 10}
    assert [config.by_profile(p, values) for p in config.PROFILES] == [1, 10, 10]
    assert config.by_profile("class", {"smoke": 3}) == 3


def test_validate_returns_the_parameters_and_stops_on_the_first_bad_one():
    assert kdlab.validate(ALPHA=0.3, TEMPERATURE=2) == {"ALPHA": 0.3, "TEMPERATURE": 2}
    with pytest.raises(ParameterError, match="ALPHA"):
        kdlab.validate(TEMPERATURE=2, ALPHA=2)


def test_setup_rejects_cuda_without_a_gpu(monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    with pytest.raises(ParameterError, match="no CUDA device"):
        kdlab.setup("smoke", 0, "cuda", quiet=True)
    run = kdlab.setup("smoke", 0, "auto", quiet=True)
    assert run.device.type == "cpu"


def test_setup_seeds_torch_reproducibly():
    import torch

    kdlab.setup("smoke", 7, "cpu", quiet=True)
    a = torch.randn(3)
    kdlab.setup("smoke", 7, "cpu", quiet=True)
    assert torch.equal(a, torch.randn(3))


def test_setup_banner_names_profile_and_expected_time(capsys):
    kdlab.setup("smoke", 0, "cpu", expected={"smoke": "about 30 s"})
    out = capsys.readouterr().out
    assert "profile 'smoke'" in out and "about 30 s" in out and "torch" in out


def test_banner_says_when_kdlab_profile_overrides_the_parameters_cell(capsys, monkeypatch):
    monkeypatch.setenv("KDLAB_PROFILE", "smoke")
    run = kdlab.setup("class", 0, "cpu")
    out = capsys.readouterr().out
    assert run.profile == "smoke" and "KDLAB_PROFILE=smoke" in out and "PROFILE='class'" in out
    monkeypatch.delenv("KDLAB_PROFILE")
    kdlab.setup("class", 0, "cpu")
    assert "KDLAB_PROFILE" not in capsys.readouterr().out, "no override, no override line"
