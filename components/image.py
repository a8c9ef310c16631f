"""Images the stack runs: built from a context in this repo, or a given reference."""

from __future__ import annotations

import platform

import pulumi
import pulumi_docker as docker

from components.config import AppImageSettings, BuildSettings

# `platform.machine()` spellings of the architectures Docker names differently.
DOCKER_ARCHITECTURES = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm/v7"}


def host_platform() -> str:
    """The platform of the machine running the program, as Docker names it (linux/amd64).

    Naming it keeps a build from guessing (and the provider from warning on every preview);
    an engine of another architecture (a remote DOCKER_HOST) is set with `build.platform`.
    """
    machine = platform.machine().lower()
    return f"linux/{DOCKER_ARCHITECTURES.get(machine, machine)}"


def built_image(
    name: str,
    *,
    repository: str,
    build: BuildSettings,
    opts: pulumi.ResourceOptions,
    base_id: pulumi.Output[str] | None = None,
) -> pulumi.Output[str]:
    """Build locally with BuildKit (cache mounts persist between builds); return the image id.

    Containers run the image *id*: a rebuild that changes the image replaces them, while a
    rebuild that yields the same image (or none, the context being unchanged) changes nothing.
    `base_id` is the id of a base image this stack builds too (named in `build.args`): passed
    as the BASE_IMAGE_ID argument, so a new base rebuilds this image, after the base.
    """
    args: dict[str, pulumi.Input[str]] = dict(sorted(build.args.items()))
    if base_id is not None:
        args["BASE_IMAGE_ID"] = base_id
    image = docker.Image(
        name,
        image_name=f"{repository}:latest",
        build=docker.DockerBuildArgs(
            context=build.context,
            dockerfile=f"{build.context}/{build.dockerfile}",
            target=build.target,
            args=args or None,
            builder_version=docker.BuilderVersion.BUILDER_BUILD_KIT,
            platform=build.platform or host_platform(),
        ),
        skip_push=True,
        opts=opts,
    )
    return image.repo_digest


def referenced_image(
    name: str, *, reference: str, opts: pulumi.ResourceOptions
) -> pulumi.Output[str]:
    """Pull (or find locally) a given image; keep it on destroy, other stacks may share it."""
    image = docker.RemoteImage(name, name=reference, keep_locally=True, opts=opts)
    return image.image_id


def app_image(
    name: str, *, repository: str, settings: AppImageSettings, opts: pulumi.ResourceOptions
) -> pulumi.Output[str]:
    if settings.build is not None:
        return built_image(name, repository=repository, build=settings.build, opts=opts)
    assert settings.image is not None  # guaranteed by AppImageSettings' validator
    return referenced_image(name, reference=settings.image, opts=opts)
