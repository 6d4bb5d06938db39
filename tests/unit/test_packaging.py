"""environment.yml (conda users) and pyproject.toml (everyone else) must name the same packages."""
import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def _name(requirement):
    return re.split(r"[<>=!~\[ ;]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def pyproject_packages():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {_name(r) for r in project["dependencies"]}
    for extra in project["optional-dependencies"].values():
        names |= {_name(r) for r in extra}
    return names


def environment_packages():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    return {_name(r) for r in pip_section if not r.startswith("-e")}


def test_environment_yml_mirrors_pyproject():
    assert environment_packages() == pyproject_packages()


def test_constraints_pin_every_direct_dependency_exactly():
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[_name(name)] = version
    missing = sorted(p for p in pyproject_packages() if p not in pins)
    assert not missing, f"constraints.txt lacks exact pins for {missing}"
    assert all(re.fullmatch(r"[0-9][0-9A-Za-z.+]*", v) for v in pins.values())
