"""pyproject.toml and environment.yml name the same dependencies."""
import re
import tomllib
from pathlib import Path

import yfcore

ROOT = Path(__file__).resolve().parents[1]


def _name(spec: str) -> str:
    # "nbconvert>=7", "python=3.11", "pytest-notebook[x]; marker" -> bare, normalised name.
    return re.split(r"[\s=<>!~\[;]", spec.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _environment_yml() -> tuple[set[str], set[str]]:
    """(conda names, pip names) under `dependencies:`; pip options such as `-e .` are skipped.

    Enough YAML for this file: conda items share the first item's indentation,
    pip items sit deeper, under `- pip:`.
    """
    conda, pip = set(), set()
    in_deps = False
    top = None
    for raw in (ROOT / "environment.yml").read_text().splitlines():
        line = raw.split("#", 1)[0].rstrip()
        if not line:
            continue
        if not line[0].isspace():
            in_deps = line.startswith("dependencies:")
            continue
        item = line.lstrip()
        if not in_deps or not item.startswith("- "):
            continue
        indent = len(line) - len(item)
        top = indent if top is None else top
        item = item[2:].strip()
        if item == "pip:" or item.startswith("-"):
            continue
        (conda if indent == top else pip).add(_name(item))
    return conda, pip


def test_environment_yml_matches_pyproject():
    project = _pyproject()
    deps = list(project["project"]["dependencies"])
    for extra in project["project"].get("optional-dependencies", {}).values():
        deps += extra
    wanted = {_name(d) for d in deps}
    # The interpreter, pip and the build backend may be listed for conda's sake.
    allowed = {"python", "pip"} | {_name(d) for d in project["build-system"]["requires"]}
    conda, pip = _environment_yml()
    listed = conda | pip
    assert wanted - listed == set(), "in pyproject.toml but missing from environment.yml"
    assert listed - wanted - allowed == set(), "in environment.yml but not in pyproject.toml"


def test_environment_yml_lists_conda_packages():
    # A pip-only environment.yml would defeat conda; the runtime must come from conda-forge.
    conda, _ = _environment_yml()
    assert {"numpy", "cffi", "matplotlib"} <= conda


def test_versions_agree():
    assert _pyproject()["project"]["version"] == yfcore.__version__
