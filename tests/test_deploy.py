"""The deployment: kustomize overlays that render and validate offline, name only settings
and commands that exist, and hold the pod to what a real cluster needs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from pydantic import ValidationError
from typer.main import get_command

from lipika.cli import cli
from lipika.config import Settings
from lipika.ops.metrics import Metrics
from tests.fixtures.kustomize import render

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
ROOT = DEPLOY.parent
OVERLAYS = ["dev", "prod", "dev/migrate", "prod/migrate"]
# The oldest Kubernetes the manifests promise to work on, and the newest schemas shipped.
KUBERNETES_VERSIONS = ["1.30.0", "1.37.0"]


def rendered(overlay: str) -> list[dict]:
    return render(DEPLOY / "k8s" / "overlays" / overlay)


def one(docs: list[dict], kind: str) -> dict:
    [doc] = [d for d in docs if d["kind"] == kind]
    return doc


def example_secret() -> dict[str, str]:
    return yaml.safe_load((DEPLOY / "k8s" / "secret.example.yaml").read_text())["stringData"]


def pod_env(overlay: str) -> dict[str, str]:
    """What a pod of the overlay gets: its ConfigMap and the example Secret."""
    return {**one(rendered(overlay), "ConfigMap")["data"], **example_secret()}


def settings_from(env: dict[str, str]) -> Settings:
    fields = {k.removeprefix("LIPIKA_").lower(): v for k, v in env.items()}
    return Settings(**fields, _env_file=None)


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_overlay_renders_and_validates_strictly(overlay: str, version: str) -> None:
    docs = rendered(overlay)
    assert docs
    for doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)


def test_every_variable_in_the_manifests_is_a_setting() -> None:
    names = set(example_secret())
    for overlay in ("dev", "prod"):
        names |= set(one(rendered(overlay), "ConfigMap")["data"])
    assert {n.removeprefix("LIPIKA_").lower() for n in names} <= set(Settings.model_fields)


def test_the_manifests_form_a_configuration_that_starts() -> None:
    """Every validator passes on each overlay's ConfigMap and the Secret together, once the
    secret is a real one (a retired setting such as LIPIKA_OPERATOR_EMAILS would refuse it)."""
    for overlay in ("dev", "prod"):
        settings = settings_from({**pod_env(overlay), "LIPIKA_SECRET_KEY": "k" * 48})
        assert settings.smtp_host and settings.smtp_uses_starttls, overlay


def test_containers_run_real_lipika_commands() -> None:
    commands = set(get_command(cli).commands)
    used = [
        c["command"]
        for overlay in OVERLAYS
        for doc in rendered(overlay)
        for c in doc.get("spec", {}).get("template", {}).get("spec", {}).get("containers", [])
    ]
    dockerfile_cmd = re.search(r"^CMD \[(.*)\]$", (DEPLOY / "Dockerfile").read_text(), re.MULTILINE)
    used.append([part.strip().strip('"') for part in dockerfile_cmd.group(1).split(",")])
    assert len(used) >= 5
    for command in used:
        assert command[0] == "lipika" and command[1] in commands, command
    assert ["lipika", "migrate"] in used


def test_the_example_secret_is_refused_and_the_production_config_is_complete() -> None:
    env = pod_env("prod")
    with pytest.raises(ValidationError, match="LIPIKA_SECRET_KEY is the example's placeholder"):
        settings_from(env)
    settings = settings_from({**env, "LIPIKA_SECRET_KEY": "k" * 48})
    assert settings.env == "production" and not settings.embedded and settings.redis_url
    assert settings.metrics_port is not None


@pytest.mark.parametrize("overlay", ["dev", "prod"])
def test_the_pod_is_ready_for_a_cluster(overlay: str) -> None:
    docs = rendered(overlay)
    deployment = one(docs, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    [api] = pod["containers"]
    settings = settings_from({**pod_env(overlay), "LIPIKA_SECRET_KEY": "k" * 48})

    name, _, tag = api["image"].rpartition(":")
    assert name and tag and tag != "latest"
    assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] > 0
    assert api["securityContext"]["readOnlyRootFilesystem"]
    assert api["securityContext"]["allowPrivilegeEscalation"] is False
    assert {"cpu", "memory"} <= set(api["resources"]["requests"])
    assert "memory" in api["resources"]["limits"]

    drain = int(api["lifecycle"]["preStop"]["exec"]["command"][-1])
    assert drain >= 5
    assert pod["terminationGracePeriodSeconds"] >= drain + settings.stream_budget_seconds
    assert api["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert api["readinessProbe"]["httpGet"]["path"] == "/readyz"
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert api[probe]["timeoutSeconds"] >= 3, probe  # /readyz gives each check 3 s

    ports = {p["name"]: p["containerPort"] for p in api["ports"]}
    assert ports["metrics"] == settings.metrics_port
    service = one(docs, "Service")
    assert {p["targetPort"] for p in service["spec"]["ports"]} == {"http"}

    labels = deployment["spec"]["template"]["metadata"]["labels"]
    pdb = one(docs, "PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_the_autoscaler_scales_on_cpu_and_streams_and_drains_slowly() -> None:
    hpa = one(rendered("prod"), "HorizontalPodAutoscaler")
    settings = settings_from({**pod_env("prod"), "LIPIKA_SECRET_KEY": "k" * 48})
    assert hpa["spec"]["scaleTargetRef"]["name"] == one(rendered("prod"), "Deployment")["metadata"]["name"]
    metrics = {m["type"]: m for m in hpa["spec"]["metrics"]}
    assert metrics["Resource"]["resource"]["name"] == "cpu"
    stream_metric = metrics["Pods"]["pods"]["metric"]["name"]
    exported = {family.name for family in Metrics().registry.collect()}
    assert stream_metric in exported
    down = hpa["spec"]["behavior"]["scaleDown"]
    assert down["stabilizationWindowSeconds"] >= settings.stream_budget_seconds
    assert all(p["type"] == "Pods" and p["value"] == 1 for p in down["policies"])
    assert 21 * hpa["spec"]["maxReplicas"] <= 250  # deploy/README.md: max_connections


@pytest.mark.parametrize("overlay", ["dev", "prod"])
def test_the_migration_job_is_made_anew_each_rollout_and_cleans_up(overlay: str) -> None:
    job = one(rendered(f"{overlay}/migrate"), "Job")
    assert "name" not in job["metadata"] and job["metadata"]["generateName"]
    assert job["spec"]["ttlSecondsAfterFinished"] > 0
    [container] = job["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["lipika", "migrate"]
    [api] = one(rendered(overlay), "Deployment")["spec"]["template"]["spec"]["containers"]
    assert container["image"] == api["image"]
    assert job["metadata"]["namespace"] == one(rendered(overlay), "Deployment")["metadata"]["namespace"]


def test_the_image_installs_no_test_extras_and_runs_unprivileged() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert "-r requirements-runtime.lock" in dockerfile
    assert re.search(r"^USER [1-9][0-9]*", dockerfile, re.MULTILINE)
    locked = {
        line.split("==")[0].lower()
        for line in (ROOT / "requirements-runtime.lock").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    }
    assert locked and not locked & {"pytest", "pytest-asyncio", "hypothesis", "kubernetes-validate"}
    assert {"prometheus-client", "fastapi"} <= locked


def test_the_compose_stack_runs_the_production_settings() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert {"app", "migrate", "app-db", "checkpoint-db", "redis"} <= set(services)
    commands = set(get_command(cli).commands)
    for name in ("app", "migrate"):
        assert services[name]["command"][:1] == ["lipika"] and services[name]["command"][1] in commands
    env = services["app"]["environment"]
    assert env == services["migrate"]["environment"]
    assert {n.removeprefix("LIPIKA_").lower() for n in env} <= set(Settings.model_fields)
    settings = settings_from({**env, "LIPIKA_SECRET_KEY": "k" * 48})
    assert settings.env == "production" and not settings.embedded
    assert services["app"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


def test_the_dashboard_shows_only_metrics_the_app_exports_and_every_family() -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "lipika.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    used = {
        re.sub(r"_(bucket|count|sum)$", "", name)
        for expr in exprs
        for name in re.findall(r"\blipika_[a-z_]+", expr)
    }
    exported = {
        family.name + ("_total" if family.type == "counter" else "")
        for family in Metrics().registry.collect()
    } | {"lipika_db_pool_connections_in_use", "lipika_db_pool_connections_max"}
    assert used == exported
