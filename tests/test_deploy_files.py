"""The deploy/ files read as their tools would read them (issue 17, item 6): the YAML parses,
the configs load, and the PostgreSQL set holds together: every Secret and ConfigMap the pods
name is one the files make or the README's commands create, the CronJob runs `digest run`, the
web runs two replicas behind a Service, and nothing of it mounts a PVC or a host path."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from digest.config import load_config

yaml = pytest.importorskip("yaml")

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
POSTGRESQL_SET = DEPLOY / "kubernetes" / "postgresql"


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def every_yaml() -> list[Path]:
    return sorted(DEPLOY.rglob("*.yaml"))


@pytest.mark.parametrize("path", every_yaml(), ids=lambda p: str(p.relative_to(DEPLOY)))
def test_each_yaml_file_parses(path: Path) -> None:
    assert documents(path)


def _pod_specs(doc: dict[str, Any]) -> list[dict[str, Any]]:
    kind = doc["kind"]
    if kind == "CronJob":
        return [doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]]
    if kind in ("Deployment", "Job"):
        return [doc["spec"]["template"]["spec"]]
    return []


def _created_secrets() -> set[tuple[str, str]]:
    """(secret, key) of each `kubectl create secret generic NAME --from-file=KEY=...` in the
    README and the files' comments."""
    text = (DEPLOY / "README.md").read_text() + "".join(p.read_text() for p in every_yaml())
    return {
        (name, key)
        for name, keys in re.findall(r"kubectl create secret generic (\S+)((?: --from-\w+=[\w-]+=\S+)+)", text)
        for key in re.findall(r"--from-\w+=([\w-]+)=", keys)
    }


def test_the_postgresql_kubernetes_set_holds_together() -> None:
    docs = [doc for path in sorted(POSTGRESQL_SET.glob("*.yaml")) for doc in documents(path)]
    kinds = {doc["kind"]: doc for doc in docs}
    assert set(kinds) >= {"ConfigMap", "Deployment", "Service", "CronJob"}
    assert "PersistentVolumeClaim" not in kinds

    web = kinds["Deployment"]
    assert web["spec"]["replicas"] == 2
    assert kinds["Service"]["spec"]["selector"] == web["spec"]["selector"]["matchLabels"]
    assert web["spec"]["template"]["spec"]["containers"][0]["command"][:2] == ["digest", "serve"]
    job = kinds["CronJob"]
    run = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    assert run["command"] == ["digest", "run"]
    assert job["spec"]["concurrencyPolicy"] == "Allow"
    assert job["spec"]["jobTemplate"]["spec"]["parallelism"] >= 2

    config_text = kinds["ConfigMap"]["data"]["config.toml"]
    url_env = re.search(r'^url_env = "(\w+)"', config_text, re.M)
    assert url_env, "the store's URL comes from the environment"
    created = _created_secrets()
    for doc in (web, job):
        for spec in _pod_specs(doc):
            for volume in spec["volumes"]:
                assert "persistentVolumeClaim" not in volume and "hostPath" not in volume
                if "configMap" in volume:
                    assert volume["configMap"]["name"] == kinds["ConfigMap"]["metadata"]["name"]
                if "secret" in volume:
                    assert any(name == volume["secret"]["secretName"] for name, _ in created)
            env = {e["name"]: e for e in spec["containers"][0]["env"]}
            ref = env[url_env.group(1)]["valueFrom"]["secretKeyRef"]
            assert (ref["name"], ref["key"]) in created


def test_the_container_configs_load(tmp_path: Path) -> None:
    for path in (DEPLOY / "config.container.toml", DEPLOY / "config.postgres.toml"):
        load_config(path)
    postgres = load_config(DEPLOY / "config.postgres.toml").store
    assert postgres.postgresql and postgres.password_file is not None
    configmap = documents(POSTGRESQL_SET / "configmap.yaml")[0]["data"]["config.toml"]
    written = tmp_path / "config.toml"
    written.write_text(configmap)
    assert load_config(written).store.url_env == "PAPERDIGEST_DATABASE_URL"


def test_the_compose_files_name_only_secrets_and_services_they_define() -> None:
    for name in ("compose.yaml", "compose.postgres.yaml"):
        compose = documents(DEPLOY / name)[0]
        secrets = set(compose.get("secrets", {}))
        services = compose["services"]
        for service in services.values():
            assert set(service.get("secrets", ())) <= secrets
            assert set(service.get("depends_on", ())) <= set(services)
    postgres = documents(DEPLOY / "compose.postgres.yaml")[0]["services"]
    assert postgres["postgres"]["image"].startswith("postgres:")
    assert "pg_isready" in postgres["postgres"]["healthcheck"]["test"]
    assert "POSTGRES_PASSWORD" not in postgres["postgres"]["environment"]  # a secret file, not inline
    assert postgres["schedule"]["deploy"]["replicas"] == 2
    assert postgres["web"]["deploy"]["replicas"] == 2
    assert postgres["worker"]["command"] == ["digest", "run"]
    for service in ("schedule", "web", "worker"):
        assert not any("paperdigest-data" in str(v) for v in postgres[service].get("volumes", ()))
    assert "web:8000" in (DEPLOY / "nginx" / "web.conf").read_text()
