"""The contributor tooling agrees with what CI runs."""

import re
import tomllib

import yaml
from helpers import ROOT


def test_the_pre_commit_hooks_run_the_ruff_that_pyproject_pins():
    pins = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["test"]
    (ruff,) = [re.fullmatch(r"ruff==(\S+)", pin.split("#")[0].strip()) for pin in pins if pin.startswith("ruff==")]
    hooks = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text())["repos"]
    (repo,) = [repo for repo in hooks if repo["repo"].endswith("/ruff-pre-commit")]
    assert repo["rev"] == f"v{ruff.group(1)}"
    assert {hook["id"] for hook in repo["hooks"]} == {"ruff-check", "ruff-format"}
