"""Deployment files, validated offline: Kubernetes manifests against Kubernetes' schemas,
the compose file against the Compose specification, the workflows against GitHub's schema;
and what they must say for one trading loop per account."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from serving.service.config import compose_serving

REPO = Path(__file__).resolve().parents[3]
K8S = REPO / "deployment/k8s"
KUBERNETES_VERSION = "1.37"


def _manifests() -> dict[str, dict]:
    docs = {}
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            docs[doc["kind"]] = doc
    return docs


@pytest.mark.parametrize("path", sorted(K8S.glob("*.yaml")), ids=lambda p: p.name)
def test_every_manifest_is_valid_kubernetes(path):
    for doc in yaml.safe_load_all(path.read_text()):
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_the_validator_rejects_a_broken_manifest():
    deployment = _manifests()["Deployment"]
    broken = json.loads(json.dumps(deployment))
    broken["spec"]["replicas"] = "one"
    with pytest.raises(kubernetes_validate.ValidationError, match="replicas"):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)
    broken = json.loads(json.dumps(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["paht"] = "/x"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_one_trading_loop_per_account():
    spec = _manifests()["Deployment"]["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}  # old pod gone before the new one starts


def test_probes_limits_volumes_and_secrets_line_up():
    docs = _manifests()
    pod = docs["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["resources"]["limits"]["cpu"] and container["resources"]["limits"]["memory"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert (
        volumes["journal"]["persistentVolumeClaim"]["claimName"]
        == (docs["PersistentVolumeClaim"]["metadata"]["name"])
    )
    assert volumes["secrets"]["secret"]["secretName"] == docs["Secret"]["metadata"]["name"]
    assert set(docs["Secret"]["stringData"]) == {
        "PHEMEX_API_KEY",
        "PHEMEX_API_SECRET",
        "PHEMEX_RL_CONTROL_TOKEN",
    }
    assert not any(docs["Secret"]["stringData"].values())  # placeholders only
    # the ConfigMap's overrides are a valid serving config pointing at those mounts
    overrides = json.loads(docs["ConfigMap"]["data"]["overrides"])
    cfg = compose_serving(overrides)
    assert cfg.mode.value == "testnet"
    assert cfg.state_dir == mounts["journal"] and cfg.secrets_dir == mounts["secrets"]
    assert (
        cfg.server.host == "0.0.0.0" and cfg.server.port == container["ports"][0]["containerPort"]
    )
    assert docs["Service"]["spec"]["type"] == "ClusterIP"


def _check_jsonschema(schema: str, *paths: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", schema, *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_compose_file_follows_the_compose_specification(tmp_path):
    compose = REPO / "deployment/docker-compose.yml"
    result = _check_jsonschema("vendor.compose-spec", compose)
    assert result.returncode == 0, result.stdout + result.stderr
    doc = yaml.safe_load(compose.read_text())
    assert set(doc["services"]) == {"trader", "exchange"}
    trader = doc["services"]["trader"]
    assert "journal" in doc["volumes"]
    assert any(v.startswith("journal:") for v in trader["volumes"])
    assert trader["ports"] == ["127.0.0.1:3000:3000"]  # published on loopback only
    cfg = compose_serving(json.loads(trader["environment"]["PHEMEX_RL_SERVE_OVERRIDES"]))
    assert cfg.mode.value == "paper" and cfg.exchange.url == "http://exchange:8080"
    assert f"--speed={cfg.exchange.speed:g}" in doc["services"]["exchange"]["command"]
    broken = tmp_path / "compose.yml"
    broken.write_text(compose.read_text().replace("services:", "servics:", 1))
    assert _check_jsonschema("vendor.compose-spec", broken).returncode != 0


def test_the_workflows_follow_githubs_schema(tmp_path):
    workflows = sorted((REPO / ".github/workflows").glob("*.yml"))
    result = _check_jsonschema("vendor.github-workflows", *workflows)
    assert result.returncode == 0, result.stdout + result.stderr
    cd = yaml.safe_load((REPO / ".github/workflows/cd.yml").read_text())
    assert cd[True]["push"]["tags"]  # `on:` parses as True in YAML 1.1
    jobs = cd["jobs"]
    assert jobs["image"]["needs"] == "test"
    assert jobs["staging"]["needs"] == "image"
    assert "staging" in jobs["production"]["needs"]
    assert jobs["production"]["environment"] == "production"
    steps = " ".join(s.get("run", "") for job in jobs.values() for s in job["steps"])
    assert "make test" in steps and "bentoml build" in steps and "bentoml containerize" in steps
    assert "mode=live" in steps and "rollout status" in steps
    broken = tmp_path / "cd.yml"
    broken.write_text(
        (REPO / ".github/workflows/cd.yml").read_text().replace("steps:", "stepz:", 1)
    )
    assert _check_jsonschema("vendor.github-workflows", broken).returncode != 0
