"""The docker compose file validates (no Docker engine runs here, so only `config`)."""

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

DEPLOY = Path(__file__).parents[3] / "deploy"


def compose_command() -> list[str]:
    """Debian's docker-compose, or the docker CLI's compose plugin."""
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False)
        if probe.returncode == 0:
            return ["docker", "compose"]
    pytest.fail(
        "no compose validator: install Debian's docker-compose (`apt-get install docker-compose`)"
        " or the docker compose plugin; `make test` installs it",
        pytrace=False,
    )


def test_compose_file_validates_with_the_example_environment(tmp_path: Path) -> None:
    deploy = tmp_path / "deploy"
    shutil.copytree(DEPLOY, deploy)
    for example in deploy.glob("*.env.example"):
        shutil.copy(example, deploy / example.name.removesuffix(".example"))
    result = subprocess.run(
        [*compose_command(), "-p", "rollcall", "-f", str(deploy / "docker-compose.yml"), "config"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load(result.stdout)
    assert {"postgres", "mosquitto", "server", "ingest"} <= set(config["services"])
    for name in ("postgres", "mosquitto", "server"):
        assert "healthcheck" in config["services"][name], f"{name} has no health check"
    assert config["volumes"], "named volumes keep the data"


def test_compose_file_refuses_to_run_without_its_secrets(tmp_path: Path) -> None:
    deploy = tmp_path / "deploy"
    shutil.copytree(DEPLOY, deploy)  # no *.env copied: the real secrets are missing
    result = subprocess.run(
        [*compose_command(), "-p", "rollcall", "-f", str(deploy / "docker-compose.yml"), "config"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
    assert ".env" in result.stderr
