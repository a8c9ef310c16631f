"""The ACME client's pieces as the program registers them: its image built on the configured
base, an environment that carries every setting and no secret, the least privilege of its
container and of the placeholder step, and names that agree with its Dockerfile and script."""

from __future__ import annotations

import re
import subprocess
from typing import Any

import pulumi
import pytest

from components.acme import (
    ACME_CONTEXT,
    ACME_HEALTHCHECK,
    ACME_USER,
    CA_FILE,
    CERTS_DIR,
    PROGRAM,
    WEBROOT_DIR,
    acme_env,
    acme_image,
    acme_spec,
    health_test,
    placeholder_argv,
    placeholder_step,
)
from components.config import (
    LETSENCRYPT_DIRECTORY,
    LETSENCRYPT_STAGING_DIRECTORY,
    LoggingSettings,
    StackSettings,
)
from components.container import (
    NetworkNames,
    StackContext,
    VolumeNames,
    service_container,
)
from tests.pulumi_harness import COMMAND, ROOT, Graph, register

DOCKERFILE = ROOT / ACME_CONTEXT / "Dockerfile"
SCRIPT = ROOT / ACME_CONTEXT / "acme.sh"
PEBBLE_CA = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
CONTAINER = "docker:index/container:Container"


def stack_settings(**acme: Any) -> StackSettings:
    return StackSettings.model_validate(
        {
            "publicHost": "stats.example.org",
            "tls": {
                "mode": "acme",
                "domains": ["stats.example.org", "www.stats.example.org"],
                "acme": {"email": "ops@example.org", **acme},
            },
        }
    )


def context() -> StackContext:
    volumes = VolumeNames(*(f"vol-{n}" for n in ("pg", "bk", "logs", "up", "assets")))
    return StackContext("dev", NetworkNames("edge-net", "data-net"), volumes, LoggingSettings())


def test_the_environment_carries_every_setting() -> None:
    settings = stack_settings(
        renewBeforeDays=20, checkIntervalMinutes=60, retryMinS=30, retryMaxS=3600
    )
    assert acme_env(settings, "astats-dev-nginx:8443") == {
        "ACME_DIRECTORY": LETSENCRYPT_DIRECTORY,
        "ACME_EMAIL": "ops@example.org",
        "ACME_DOMAINS": "stats.example.org www.stats.example.org",
        "ACME_RENEW_BEFORE_DAYS": "20",
        "ACME_CHECK_INTERVAL_S": "3600",
        "ACME_RETRY_MIN_S": "30",
        "ACME_RETRY_MAX_S": "3600",
        "ACME_SERVED_ADDRESS": "astats-dev-nginx:8443",
    }


def test_staging_and_a_private_directory() -> None:
    staging = acme_env(stack_settings(staging=True), "nginx:8443")
    assert staging["ACME_DIRECTORY"] == LETSENCRYPT_STAGING_DIRECTORY
    assert "ACME_CA_FILE" not in staging
    private = acme_env(
        stack_settings(directoryUrl="https://10.0.0.1:14000/dir", directoryCa=PEBBLE_CA), "n:1"
    )
    assert private["ACME_DIRECTORY"] == "https://10.0.0.1:14000/dir"
    assert private["ACME_CA_FILE"] == CA_FILE


def test_the_domains_default_to_the_public_host() -> None:
    settings = StackSettings.model_validate(
        {"publicHost": "stats.example.org", "tls": {"mode": "acme", "acme": {"email": "a@b.cd"}}}
    )
    assert acme_env(settings, "n:1")["ACME_DOMAINS"] == "stats.example.org"


def test_the_image_is_built_from_its_context_on_the_configured_base() -> None:
    settings = stack_settings(image="debian:bookworm-20250101-slim").tls.acme

    def make() -> None:
        acme_image("acme-image", stack=context(), settings=settings, opts=pulumi.ResourceOptions())

    image = register(make, stack="dev").named("acme-image")
    build = image.inputs["build"]
    assert build["context"] == ACME_CONTEXT
    assert build["dockerfile"] == f"{ACME_CONTEXT}/Dockerfile"
    assert build["args"] == {"BASE_IMAGE": "debian:bookworm-20250101-slim"}
    assert image.inputs["imageName"] == "astats-dev-acme:latest"
    assert image.inputs["skipPush"] is True


def registered_container(settings: StackSettings) -> Graph:
    def make() -> None:
        owner = pulumi.ComponentResource("astats:test:Owner", "owner")
        spec = acme_spec(
            context(),
            settings,
            image="sha256:acme",
            certs_volume="astats-dev-acme-certs",
            webroot_volume="astats-dev-acme-webroot",
            served_address="astats-dev-nginx:8443",
        )
        service_container(owner, context(), spec)

    return register(make, stack="dev")


def test_the_container_has_least_privilege_and_its_two_volumes() -> None:
    graph = registered_container(stack_settings())
    container = graph.named("acme", CONTAINER).inputs
    assert container["user"] == ACME_USER
    assert container["readOnly"] is True
    assert container["capabilities"] == {"drops": ["ALL"]}
    assert container["tmpfs"] == {"/tmp": "rw,noexec,nosuid,nodev,size=4m"}
    assert container["securityOpts"] == ["no-new-privileges:true"]
    volumes = {v["containerPath"]: v["volumeName"] for v in container["volumes"]}
    assert volumes == {CERTS_DIR: "astats-dev-acme-certs", WEBROOT_DIR: "astats-dev-acme-webroot"}
    assert not any("docker.sock" in str(v) for v in container["volumes"])
    assert [n["name"] for n in container["networksAdvanced"]] == ["edge-net"]
    assert container["healthcheck"]["tests"] == health_test()
    assert container["command"] == ["run"]
    assert "entrypoints" not in container
    assert graph.pids_limit(graph.named("acme", CONTAINER)) == 64
    assert {"astats.service": "acme", "astats.stack": "dev"}.items() <= {
        item["label"]: item["value"] for item in container["labels"]
    }.items()


def test_a_private_directory_s_ca_reaches_the_container_as_a_file() -> None:
    graph = registered_container(
        stack_settings(directoryUrl="https://10.0.0.1:14000/dir", directoryCa=PEBBLE_CA)
    )
    container = graph.named("acme", CONTAINER)
    assert graph.files(container) == {"directory-ca.pem": PEBBLE_CA}
    assert "ACME_CA_FILE=" + CA_FILE in container.inputs["envs"]
    assert not any("BEGIN CERTIFICATE" in env for env in container.inputs["envs"]), (
        "the CA travels as a file"
    )


def test_without_a_private_directory_there_is_no_files_volume() -> None:
    graph = registered_container(stack_settings())
    assert not [r for r in graph.of_type(COMMAND) if r.name.endswith("-write-files")]


def test_the_placeholder_step_runs_the_image_unprivileged_on_the_certs_volume() -> None:
    argv = placeholder_argv("dev", "sha256:acme", "astats-dev-acme-certs")
    assert argv[:2] == ["docker", "run"]
    for flag in (
        f"--user={ACME_USER}",
        "--read-only",
        "--cap-drop=ALL",
        "--network=none",
        f"--volume=astats-dev-acme-certs:{CERTS_DIR}",
        "--label=astats.service=acme",
    ):
        assert flag in argv
    assert not [a for a in argv if a.startswith("--cap-add")]
    assert argv[-3:] == ["sha256:acme", "-c", f"exec {PROGRAM} placeholder"]


def test_the_placeholder_step_waits_for_what_it_is_given() -> None:
    def make() -> None:
        owner = pulumi.ComponentResource("astats:test:Owner", "owner")
        volume = pulumi.CustomResource("test:index:Volume", "certs")
        placeholder_step(
            owner, context(), image="sha256:acme", certs_volume="certs-vol", after=[volume]
        )

    graph = register(make, stack="dev")
    step = graph.child_of("owner", "acme-placeholder", COMMAND)
    assert step.inputs["create"].endswith(f"sha256:acme -c 'exec {PROGRAM} placeholder'")
    assert "--volume=certs-vol:/var/lib/astats-acme" in step.inputs["create"]
    assert graph.waits_for(step, graph.named("certs"))


@pytest.mark.parametrize(
    ("name", "value"),
    [("CERTS_DIR", CERTS_DIR), ("WEBROOT", WEBROOT_DIR)],
)
def test_the_script_uses_the_same_paths(name: str, value: str) -> None:
    assert re.search(rf"^{name}={re.escape(value)}$", SCRIPT.read_text(), re.MULTILINE)


def test_the_dockerfile_agrees_with_the_program() -> None:
    text = DOCKERFILE.read_text()
    assert re.search(r"^ARG BASE_IMAGE=debian:bookworm-slim$", text, re.MULTILINE)
    assert re.search(rf"^USER {ACME_USER}$", text, re.MULTILINE)
    assert f"COPY acme.sh {PROGRAM}\n" in text
    check = ACME_HEALTHCHECK
    assert (
        f"HEALTHCHECK --interval={check.interval_s}s --timeout={check.timeout_s}s "
        f"--start-period={check.start_period_s}s --retries={check.retries} \\\n"
        f'    CMD ["{PROGRAM}", "health"]'
    ) in text
    assert f'ENTRYPOINT ["{PROGRAM}"]' in text
    for directory in (CERTS_DIR, WEBROOT_DIR):
        assert directory in text
    assert SCRIPT.stat().st_mode & 0o111, "COPY keeps the mode: the script must be executable"


def test_the_script_is_valid_bash() -> None:
    result = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
