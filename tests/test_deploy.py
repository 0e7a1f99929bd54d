"""The deployment files name only settings and commands that exist."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from typer.main import get_command

from lipika.cli import cli
from lipika.config import Settings

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"


def _documents() -> list[dict]:
    return [doc for path in sorted(DEPLOY.glob("k8s/*.yaml")) for doc in yaml.safe_load_all(path.read_text())]


def test_every_variable_in_the_manifests_is_a_setting() -> None:
    names: set[str] = set()
    for doc in _documents():
        if doc["kind"] in ("ConfigMap", "Secret"):
            names |= set(doc.get("data", {})) | set(doc.get("stringData", {}))
    assert names, "no settings found in deploy/k8s"
    assert {n.removeprefix("LIPIKA_").lower() for n in names} <= set(Settings.model_fields)


def test_the_manifests_form_a_configuration_that_starts() -> None:
    """Every validator passes on the ConfigMap and Secret together (a retired setting such as
    LIPIKA_OPERATOR_EMAILS would refuse start-up)."""
    values: dict[str, str] = {}
    for doc in _documents():
        if doc["kind"] in ("ConfigMap", "Secret"):
            values |= doc.get("data", {}) | doc.get("stringData", {})
    settings = Settings(_env_file=None, **{k.removeprefix("LIPIKA_").lower(): v for k, v in values.items()})
    assert settings.env == "production" and settings.smtp_host and settings.smtp_uses_starttls


def test_containers_run_real_lipika_commands() -> None:
    commands = set(get_command(cli).commands)
    used = []
    for doc in _documents():
        spec = doc.get("spec", {}).get("template", {}).get("spec", {})
        used += [c["command"] for c in spec.get("containers", [])]
    dockerfile_cmd = re.search(r'^CMD \[(.*)\]$', (DEPLOY / "Dockerfile").read_text(), re.MULTILINE)
    used.append([part.strip().strip('"') for part in dockerfile_cmd.group(1).split(",")])
    assert len(used) >= 3
    for command in used:
        assert command[0] == "lipika" and command[1] in commands, command
