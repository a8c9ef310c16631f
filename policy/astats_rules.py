"""The operators' rules for the A-Stats Engine's Docker resources, as plain functions.

Each rule looks at one resource as the policy engine shows it (its type token, its inputs with
camelCase keys, and the resource options a policy can see) and returns violation messages; an
empty list means the resource complies. A stack rule looks at every resource at once, for what
one resource cannot show (a container's PIDs limit, which a step after it sets). Nothing here
imports Pulumi, so the rules run the same under `pulumi preview --policy-pack policy` and in
the unit tests.

Values the engine cannot know yet during a preview arrive as `UNKNOWN`; a rule never reports a
violation on a value it cannot see.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

CONTAINER: Final = "docker:index/container:Container"
VOLUME: Final = "docker:index/volume:Volume"
COMMAND: Final = "command:local:Command"
SERVICE_LABEL: Final = "astats.service"
FILES_LABEL: Final = "astats.files"
"""Marks a service's files volume (secrets, a config): no data of its own."""
ROOT_USERS: Final = frozenset({"root", "0"})
DATABASE_SERVICE: Final = "db"


class _Unknown:
    """Marks a value that is computed during the rollout and so cannot be judged in a preview."""

    _instance: _Unknown | None = None

    def __new__(cls) -> _Unknown:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNKNOWN"


UNKNOWN: Final = _Unknown()

Props = Mapping[str, Any]


@dataclass(frozen=True)
class Options:
    """The resource options the policy engine passes to a policy pack.

    `retain_on_delete` is not among them: the engine's analyzer protocol carries protect,
    delete-before-replace, ignore-changes, aliases, timeouts and parent only.
    """

    protect: bool = False
    delete_before_replace: bool | None = None


@dataclass(frozen=True)
class Rule:
    name: str
    description: str
    resource_type: str
    check: Callable[[Props, Options], list[str]]


@dataclass(frozen=True)
class Resource:
    """One resource of the stack, for a rule over several: what it is, and what it waits for."""

    type: str
    urn: str
    name: str
    props: Props
    dependencies: tuple[str, ...] = ()


@dataclass(frozen=True)
class StackRule:
    """A rule only the whole stack can answer; its check returns (resource URN, message)."""

    name: str
    description: str
    check: Callable[[Sequence[Resource]], list[tuple[str, str]]]


# Docker's own defaults for an unset healthcheck field.
_DOCKER_DEFAULT_INTERVAL_S: Final = 30.0
_DOCKER_DEFAULT_TIMEOUT_S: Final = 30.0
_DOCKER_DEFAULT_RETRIES: Final = 3

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_DURATION_UNIT_S: Final = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}

# A name that says it holds a credential. `*_FILE` variables hold a path to one, which is the
# safe way to hand a secret to a container.
_SECRET_NAME = re.compile(r"(PASSWORD|PASSWD|SECRET|TOKEN|KEY|CREDENTIAL)", re.IGNORECASE)
_FILE_REFERENCE = re.compile(r"_FILE$", re.IGNORECASE)


def duration_s(value: str) -> float:
    """Seconds in a Go/Docker duration such as "5s", "1m30s" or "250ms"."""
    text = value.strip()
    if text in ("0", ""):
        return 0.0
    total, position = 0.0, 0
    for part in _DURATION_PART.finditer(text):
        if part.start() != position:
            break
        total += float(part.group(1)) * _DURATION_UNIT_S[part.group(2)]
        position = part.end()
    if position != len(text):
        raise ValueError(f"not a duration: {value!r}")
    return total


def labels_of(props: Props) -> dict[Any, Any]:
    labels = props.get("labels")
    if not isinstance(labels, Sequence) or isinstance(labels, str):
        return {}
    return {item.get("label"): item.get("value") for item in labels if isinstance(item, Mapping)}


def is_database(props: Props) -> bool:
    return labels_of(props).get(SERVICE_LABEL) == DATABASE_SERVICE


def container_named(props: Props) -> str:
    """How a message names a container: by its service, which the operator knows it by."""
    service = labels_of(props).get(SERVICE_LABEL)
    return f"the {service} container" if isinstance(service, str) else "the container"


def published_ports(props: Props) -> list[Any]:
    ports = props.get("ports")
    if isinstance(ports, Sequence) and not isinstance(ports, str):
        return list(ports)
    return []


def healthcheck_budget_s(healthcheck: Props) -> float:
    """How long Docker may take to call a container unhealthy under this check."""

    def seconds(key: str, default: float) -> float:
        raw = healthcheck.get(key)
        if raw is None or raw is UNKNOWN:
            return default
        parsed = duration_s(str(raw))
        # Docker treats a zero interval or timeout as "use the default".
        return parsed if parsed > 0 or default == 0.0 else default

    retries_raw = healthcheck.get("retries")
    retries = (
        int(retries_raw)
        if isinstance(retries_raw, int | float) and retries_raw > 0
        else _DOCKER_DEFAULT_RETRIES
    )
    return seconds("startPeriod", 0.0) + retries * (
        seconds("interval", _DOCKER_DEFAULT_INTERVAL_S)
        + seconds("timeout", _DOCKER_DEFAULT_TIMEOUT_S)
    )


def check_log_rotation(props: Props, _opts: Options) -> list[str]:
    driver = props.get("logDriver")
    log_opts = props.get("logOpts")
    problems = []
    if driver is not UNKNOWN and driver != "json-file":
        problems.append(f"log driver is {driver!r}; set log_driver='json-file'")
    if log_opts is UNKNOWN:
        return problems
    options = log_opts if isinstance(log_opts, Mapping) else {}
    missing = [key for key in ("max-size", "max-file") if not options.get(key)]
    if missing:
        problems.append(f"log_opts lacks {', '.join(missing)}: the container's log grows unbounded")
    return problems


def check_memory_limit(props: Props, _opts: Options) -> list[str]:
    memory = props.get("memory")
    if memory is UNKNOWN or (isinstance(memory, int | float) and memory > 0):
        return []
    return ["no memory limit (memory, in MB): one runaway service can starve the host"]


def check_healthcheck(props: Props, _opts: Options) -> list[str]:
    healthcheck = props.get("healthcheck")
    if healthcheck is UNKNOWN:
        return []
    tests = healthcheck.get("tests") if isinstance(healthcheck, Mapping) else None
    if tests is UNKNOWN:
        return []
    if not isinstance(tests, Sequence) or isinstance(tests, str) or not tests:
        return ["no healthcheck with tests: nothing tells Docker or `pulumi up` it is healthy"]
    if tests[0] == "NONE":
        return ["healthcheck is disabled (NONE)"]
    return []


def check_waits_for_healthy(props: Props, _opts: Options) -> list[str]:
    problems = []
    wait = props.get("wait")
    if wait is not UNKNOWN and wait is not True:
        problems.append("wait is not true: `pulumi up` would go on before the container is healthy")
    healthcheck = props.get("healthcheck")
    timeout = props.get("waitTimeout")
    if not isinstance(healthcheck, Mapping) or timeout is UNKNOWN:
        return problems
    budget = healthcheck_budget_s(healthcheck)
    # The provider waits 60 s when wait_timeout is unset.
    waited = float(timeout) if isinstance(timeout, int | float) else 60.0
    if waited < budget:
        problems.append(
            f"wait_timeout is {waited:g}s but the healthcheck may take {budget:g}s "
            "(start_period + retries x (interval + timeout)): a slow start fails the rollout"
        )
    return problems


def check_database_unpublished(props: Props, _opts: Options) -> list[str]:
    if not is_database(props):
        return []
    problems = []
    if published_ports(props):
        problems.append("the database publishes a host port; it must be reachable only inside")
    if props.get("networkMode") == "host":
        problems.append("the database uses the host network, which exposes its port on the host")
    return problems


def check_data_volume_kept(props: Props, opts: Options) -> list[str]:
    if not is_database(props) or FILES_LABEL in labels_of(props) or opts.protect:
        return []
    return [
        "a data volume of the database is not protected. retain_on_delete cannot be seen by "
        "policies, so only `protect` proves a destroy or replacement keeps the data; set "
        "astats:database.protectVolume true (stacks that rely on retain_on_delete alone run "
        "this rule as advisory, see policy/config)"
    ]


def check_host_port_replacement(props: Props, opts: Options) -> list[str]:
    if not published_ports(props) or opts.delete_before_replace:
        return []
    return [
        "publishes a host port without delete_before_replace: the replacement cannot bind "
        "the port while the old container still holds it"
    ]


def check_plaintext_secret_env(props: Props, _opts: Options) -> list[str]:
    envs = props.get("envs")
    if not isinstance(envs, Sequence) or isinstance(envs, str):
        return []
    problems = []
    for entry in envs:
        if not isinstance(entry, str):
            continue
        name, _, value = entry.partition("=")
        if _SECRET_NAME.search(name) and not _FILE_REFERENCE.search(name) and value:
            problems.append(
                f"env {name} carries a credential in the container's configuration, "
                f"readable by `docker inspect`; upload it as a file and pass {name}_FILE"
            )
    return problems


def check_read_only_root(props: Props, _opts: Options) -> list[str]:
    read_only = props.get("readOnly")
    if read_only is UNKNOWN or read_only is True:
        return []
    return [
        f"{container_named(props)} has a writable root file system (read_only is not true): a "
        "compromised process could rewrite its programs; set read_only=True and give the "
        "service a tmpfs where it writes"
    ]


def check_capabilities_dropped(props: Props, _opts: Options) -> list[str]:
    capabilities = props.get("capabilities")
    if capabilities is UNKNOWN:
        return []
    drops = capabilities.get("drops") if isinstance(capabilities, Mapping) else None
    if drops is UNKNOWN:
        return []
    dropped = {str(d).upper() for d in drops} if isinstance(drops, Sequence) else set()
    if dropped & {"ALL", "CAP_ALL"}:
        return []
    return [
        f"{container_named(props)} keeps Docker's default capabilities (capabilities.drops "
        "lacks ALL); drop ALL and add back, in capabilities.adds, only what the service needs"
    ]


def check_non_root_user(props: Props, _opts: Options) -> list[str]:
    user = props.get("user")
    if user is UNKNOWN:
        return []
    name = str(user).split(":", 1)[0] if user else ""
    if name and name not in ROOT_USERS:
        return []
    shown = f"user is {user!r}" if user else "no user is set, so the image's (often root) runs it"
    return [f"{container_named(props)} runs as root ({shown}); set user to an unprivileged one"]


def check_pids_limits(resources: Sequence[Resource]) -> list[tuple[str, str]]:
    """pulumi-docker 5 has no PIDs limit for a container: a step after it (`docker update
    --pids-limit`) sets one, and each container needs such a step."""
    problems = []
    for container in resources:
        if container.type != CONTAINER:
            continue
        limited = False
        for step in resources:
            if step.type != COMMAND or container.urn not in step.dependencies:
                continue
            create = step.props.get("create")
            environment = step.props.get("environment")
            limit = environment.get("PIDS_LIMIT") if isinstance(environment, Mapping) else None
            if not isinstance(create, str) or "--pids-limit" not in create:
                continue
            if limit is UNKNOWN or (isinstance(limit, str) and limit.isdigit() and int(limit) > 0):
                limited = True
        if not limited:
            problems.append(
                (
                    container.urn,
                    f"{container_named(container.props)} ({container.name}) has no PIDs limit: "
                    "no step after it runs `docker update --pids-limit` with a positive "
                    "PIDS_LIMIT; one fork loop could exhaust the host's process table "
                    "(astats:<service>.pidsLimit sets it)",
                )
            )
    return problems


RULES: Final[tuple[Rule, ...]] = (
    Rule(
        "container-log-rotation",
        "Every container logs to json-file with max-size and max-file set.",
        CONTAINER,
        check_log_rotation,
    ),
    Rule(
        "container-memory-limit",
        "Every container has a memory limit.",
        CONTAINER,
        check_memory_limit,
    ),
    Rule(
        "container-healthcheck",
        "Every container has a healthcheck with a test command.",
        CONTAINER,
        check_healthcheck,
    ),
    Rule(
        "container-waits-for-healthy",
        "`pulumi up` waits for every container to be healthy, for as long as its healthcheck "
        "may take.",
        CONTAINER,
        check_waits_for_healthy,
    ),
    Rule(
        "database-not-published",
        "The database container publishes no host port.",
        CONTAINER,
        check_database_unpublished,
    ),
    Rule(
        "data-volume-protected",
        "The database's data volumes (its data, and pgBackRest's WAL archive) are protected, "
        "so neither a destroy nor a replacement can delete them.",
        VOLUME,
        check_data_volume_kept,
    ),
    Rule(
        "host-port-delete-before-replace",
        "A container that publishes a host port is deleted before its replacement starts.",
        CONTAINER,
        check_host_port_replacement,
    ),
    Rule(
        "no-plaintext-secret-env",
        "No container gets a credential through a plain environment variable.",
        CONTAINER,
        check_plaintext_secret_env,
    ),
    Rule(
        "container-read-only-root",
        "Every container's root file system is read-only.",
        CONTAINER,
        check_read_only_root,
    ),
    Rule(
        "container-capabilities-dropped",
        "Every container drops all capabilities, adding back only what its service needs.",
        CONTAINER,
        check_capabilities_dropped,
    ),
    Rule(
        "container-non-root-user",
        "Every container runs as a named, unprivileged user.",
        CONTAINER,
        check_non_root_user,
    ),
)

STACK_RULES: Final[tuple[StackRule, ...]] = (
    StackRule(
        "container-pids-limit",
        "Every container gets a PIDs limit (a `docker update --pids-limit` step after it).",
        check_pids_limits,
    ),
)


def stack_violations(resources: Sequence[Resource]) -> dict[str, list[tuple[str, str]]]:
    """Every stack rule the resources break, by rule name, with (URN, message) pairs."""
    found = {}
    for rule in STACK_RULES:
        problems = rule.check(resources)
        if problems:
            found[rule.name] = problems
    return found


def violations(resource_type: str, props: Props, opts: Options) -> dict[str, list[str]]:
    """Every rule that `resource_type` breaks, by rule name, with its messages."""
    found = {}
    for rule in RULES:
        if rule.resource_type == resource_type:
            messages = rule.check(props, opts)
            if messages:
                found[rule.name] = messages
    return found
