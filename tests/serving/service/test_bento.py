"""``bentoml build`` packages the service and its agent offline, with nothing it should not."""

from __future__ import annotations

import importlib.metadata
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.serving.service.conftest import REPO, service_env

pytestmark = pytest.mark.slow


def _bentofile() -> dict:
    return yaml.safe_load((REPO / "bentofile.yaml").read_text())


def test_the_bento_pins_the_versions_the_tests_run():
    pins = dict(p.split("==") for p in _bentofile()["python"]["packages"])
    pins = {name.split("[")[0]: version for name, version in pins.items()}  # extras
    assert _bentofile()["python"]["lock_packages"] is False  # locking needs the internet
    for name, version in pins.items():
        installed = importlib.metadata.version(name).split("+")[0]  # torch 2.13.0+cpu
        assert installed == version, f"bentofile pins {name}=={version}, tests run {installed}"


def test_bentoml_build_packs_the_service_and_its_agent_offline(exported_agent, tmp_path):
    home = tmp_path / "bentoml"  # outside the build context
    shutil.copytree(exported_agent.home, home)
    env = service_env(exported_agent)
    env.update(
        BENTOML_HOME=str(home),
        PHEMEX_RL_SERVE_OVERRIDES=json.dumps([f"agent={exported_agent.tag}"]),
        # no network at all: a build that reaches out fails
        HTTP_PROXY="http://127.0.0.1:9",
        HTTPS_PROXY="http://127.0.0.1:9",
        NO_PROXY="",
    )
    built = subprocess.run(
        [str(Path(sys.executable).with_name("bentoml")), "build", ".", "--output", "tag"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    tag = re.search(r"__tag__:(\S+)", built.stdout).group(1)
    name, version = tag.split(":")
    bento = home / "bentos" / name / version
    files = {
        p.relative_to(bento / "src").as_posix() for p in (bento / "src").rglob("*") if p.is_file()
    }
    assert "serving/service/service.py" in files and "conf/serving/live.yaml" in files
    assert "envs/sample_data/binance_usdm/BTC_USDT_USDT/5m.parquet" in files  # paper replays it
    assert not [f for f in files if f.startswith(("tests/", "state/", ".venv/", "outputs/"))]
    assert not [f for f in files if "__pycache__" in f]
    manifest = yaml.safe_load((bento / "bento.yaml").read_text())
    (service,) = manifest["services"]
    # the agent is the bento's model: export and containerize carry it with the service
    assert [m["tag"] for m in service["models"]] == [exported_agent.tag]
    assert service["config"]["workers"] == 1  # one trading loop per account
    assert service["config"]["http"]["host"] == "127.0.0.1"
    requirements = (bento / "env/python/requirements.txt").read_text()
    assert "torch==2.13.0" in requirements and "bentoml==1.4.40" in requirements
