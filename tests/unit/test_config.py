"""Bad or missing config fails before any resource exists, naming the key and the fix."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from components.config import (
    BackendSettings,
    ConfigError,
    Healthcheck,
    StackSettings,
)
from tests.pulumi_harness import DEV_SECRETS, dev_config, evaluate


def failing(
    settings: dict[str, Any] | None = None,
    secrets: dict[str, str] | None = None,
    **kwargs: Any,
) -> str:
    with pytest.raises(ConfigError) as caught:
        evaluate(settings, secrets, **kwargs)
    return str(caught.value)


def test_dev_config_is_valid_as_committed() -> None:
    StackSettings.model_validate(dev_config())


def test_every_default_is_valid() -> None:
    settings = StackSettings()
    assert settings.nginx.websocket.path == "/ws/dev-cockpit"
    assert settings.nginx.websocket.read_timeout_s > 60


@pytest.mark.parametrize("missing", ["dbPassword", "secretKey"])
def test_missing_secret_names_the_key_and_the_command(missing: str) -> None:
    secrets = {k: v for k, v in DEV_SECRETS.items() if k != missing}
    message = failing(secrets=secrets)
    assert f"astats:{missing}: missing secret" in message
    # The fix never puts the secret on a command line: it is typed at the prompt or piped in.
    fix = "(it reads the value from the prompt or stdin)"
    assert f"pulumi config set --secret astats:{missing} {fix}" in message
    assert "<value>" not in message.split(f"astats:{missing}: missing secret", 1)[1].split("\n")[0]


def test_missing_secret_registers_no_resource() -> None:
    from tests import pulumi_harness

    recorded: list[object] = []
    original = pulumi_harness.RecordingMonitor.RegisterResource

    def spy(self, request):  # type: ignore[no-untyped-def]
        recorded.append(request.type)
        return original(self, request)

    pulumi_harness.RecordingMonitor.RegisterResource = spy  # type: ignore[method-assign]
    try:
        failing(secrets={"secretKey": "x"})
    finally:
        pulumi_harness.RecordingMonitor.RegisterResource = original  # type: ignore[method-assign]
    assert [t for t in recorded if t != "pulumi:pulumi:Stack"] == []


def test_secret_stored_in_plain_text_is_refused() -> None:
    message = failing(secrets={"secretKey": "s"}, plaintext={"dbPassword": "visible"})
    assert "astats:dbPassword: stored in plain text" in message
    assert "pulumi config set --secret astats:dbPassword" in message
    assert "visible" not in message


def test_unknown_top_level_key_suggests_the_right_one() -> None:
    config = dev_config() | {"backnd": {"memoryMb": 512}}
    message = failing(config)
    assert "astats:backnd: unknown setting (did you mean 'backend'?)" in message
    assert "pulumi config rm astats:backnd" in message


def test_unknown_nested_key_is_named_with_its_path() -> None:
    config = dev_config()
    config["nginx"] = {**config["nginx"], "httpPrt": 8081}
    message = failing(config)
    assert "astats:nginx.httpPrt: unknown setting (did you mean 'httpPort'?)" in message


def test_wrong_type_names_key_value_and_fix() -> None:
    config = dev_config()
    config["backend"] = {**config["backend"], "memoryMb": "lots"}
    message = failing(config)
    assert "astats:backend.memoryMb:" in message
    assert "'lots'" in message
    assert "pulumi config set --path 'astats:backend.memoryMb' <value>" in message


def test_out_of_range_value_is_refused() -> None:
    config = dev_config()
    config["nginx"] = {**config["nginx"], "httpPort": 70000}
    assert "astats:nginx.httpPort: Input should be less than or equal to 65535" in failing(config)


def test_two_services_on_one_host_port_are_refused() -> None:
    config = dev_config()
    config["backend"] = {**config["backend"], "hostPort": config["nginx"]["httpPort"]}
    message = failing(config)
    assert "astats:nginx.httpPort and astats:backend.hostPort are both 8080" in message
    assert "pulumi config set --path" in message


def test_all_problems_are_reported_at_once() -> None:
    config = dev_config() | {"bogus": "1"}
    config["logging"] = {"maxFile": 0}
    message = failing(config, secrets={})
    for key in ("astats:bogus", "astats:logging.maxFile", "astats:dbPassword", "astats:secretKey"):
        assert key in message


def test_offsite_backups_need_their_credentials() -> None:
    config = dev_config()
    config["backup"] = {**config["backup"], "s3": {"bucket": "astats-backups"}}
    message = failing(config)
    assert "astats:backupS3AccessKeyId: missing secret" in message
    assert "because backup.s3 is set" in message
    assert "astats:backupS3SecretAccessKey" in message


def test_missing_build_context_says_how_to_fix_it() -> None:
    config = dev_config()
    config["backend"] = {**config["backend"], "build": {"context": "no/such/dir"}}
    message = failing(config)
    assert "astats:backend.build.context: no Dockerfile in 'no/such/dir'" in message
    assert "pulumi config set --path 'astats:backend.image' <image>" in message


def test_image_and_build_are_exclusive() -> None:
    with pytest.raises(ValidationError, match="exactly one of `image`"):
        BackendSettings(image="a/b:1", build={"context": "."})
    with pytest.raises(ValidationError, match="exactly one of `image`"):
        BackendSettings()


def test_secret_looking_env_is_refused() -> None:
    with pytest.raises(ValidationError, match="secrets belong in `pulumi config set --secret`"):
        BackendSettings(image="a/b:1", env={"STRIPE_API_KEY": "sk_live"})


def test_websocket_path_may_not_hide_under_an_api_prefix() -> None:
    with pytest.raises(ValidationError, match="needs its own prefix"):
        StackSettings.model_validate(
            {"nginx": {"websocket": {"path": "/api/ws"}}, "backend": {"image": "a/b:1"}}
        )


@pytest.mark.parametrize("retired", ["upstreamMode", "resolverValidS"])
def test_a_retired_nginx_setting_says_how_to_remove_it(retired: str) -> None:
    # Traffic follows the health-gated switch now, not DNS: these settings have no effect left.
    message = failing(changed(nginx={retired: "variable" if retired == "upstreamMode" else 10}))
    assert f"astats:nginx.{retired}: unknown setting" in message
    assert f"remove it with: pulumi config rm --path 'astats:nginx.{retired}'" in message


@pytest.mark.parametrize(
    ("prefixes", "message"),
    [
        (("/healthz",), "nginx's own health check"),
        (("/ws/dev-cockpit",), "WebSocket"),
        (("/_next/static/",), "Next.js static"),
        (("api/",), "not a URL path"),
        (('/a" ; evil',), "not a URL path"),
        ((), "at least one"),
    ],
)
def test_prefixes_nginx_would_reject_are_refused_with_the_reason(
    prefixes: tuple[str, ...], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        StackSettings.model_validate({"backend": {"image": "a/b:1", "apiPrefixes": prefixes}})


def test_healthcheck_budget() -> None:
    check = Healthcheck(interval_s=10, timeout_s=5, retries=3, start_period_s=20)
    assert check.budget_s == 20 + 3 * (10 + 5)


def test_a_refused_value_that_may_be_a_secret_is_not_repeated() -> None:
    settings = dev_config()
    settings["backend"] = {**settings["backend"], "env": {"DB_PASSWORD": "Sentinel-hunter2"}}
    message = failing(settings)
    assert "astats:backend.env" in message
    assert "Sentinel-hunter2" not in message


def changed(**blocks: dict[str, Any]) -> dict[str, Any]:
    """The dev config with these keys set inside the named blocks."""
    config = dev_config()
    for block, values in blocks.items():
        config[block] = {**config.get(block, {}), **values}
    return config


BUILD = {"context": "examples/demo-app/backend"}


@pytest.mark.parametrize(
    ("config", "problem"),
    [
        pytest.param(
            changed(backend={"hostPort": 8080}),
            "astats:nginx.httpPort and astats:backend.hostPort are both 8080: "
            "give them different ports; fix: pulumi config set --path 'astats:backend.hostPort'",
            id="nginx-backend-port",
        ),
        pytest.param(
            changed(nginx={"httpPort": 9000}, frontend={"hostPort": 9000}),
            "astats:nginx.httpPort and astats:frontend.hostPort are both 9000: "
            "give them different ports; fix: pulumi config set --path 'astats:frontend.hostPort'",
            id="nginx-frontend-port",
        ),
        pytest.param(
            changed(backend={"hostPort": 9001}, frontend={"hostPort": 9001}),
            "astats:backend.hostPort and astats:frontend.hostPort are both 9001: "
            "give them different ports; fix: pulumi config set --path 'astats:frontend.hostPort'",
            id="backend-frontend-port",
        ),
        pytest.param(
            changed(nginx={"websocket": {"path": "/api/ws"}}),
            "astats:nginx.websocket.path /api/ws lies under astats:backend.apiPrefixes entry "
            "/api/: the WebSocket location needs its own prefix; "
            "fix: pulumi config set --path 'astats:nginx.websocket.path' /ws/<name>",
            id="websocket-under-api-prefix",
        ),
        pytest.param(
            changed(backend={"image": "astats/backend:1", "build": BUILD}),
            "astats:backend.image (a reference) and astats:backend.build (a context) are both "
            "set, but exactly one of `image` or `build` is wanted; "
            "fix: pulumi config rm --path 'astats:backend.build'",
            id="image-and-build",
        ),
        pytest.param(
            {**dev_config(), "frontend": {"memoryMb": 512}},
            "neither astats:frontend.image (a reference) nor astats:frontend.build (a context) "
            "is set, but exactly one of `image` or `build` is wanted; "
            "fix: pulumi config set --path 'astats:frontend.image' <image>",
            id="neither-image-nor-build",
        ),
    ],
)
def test_a_rule_over_several_settings_names_each_key(config: dict[str, Any], problem: str) -> None:
    message = failing(config)
    assert f"\n  - {problem}" in message
    assert "(stack)" not in message


def test_a_rule_over_several_settings_repeats_no_other_setting() -> None:
    sentinel = "Sentinel-token-4f1c"
    config = changed(backend={"hostPort": 8080, "env": {"GREETING": sentinel}})
    message = failing(config)
    assert "are both 8080" in message
    assert sentinel not in message
    assert "examples/demo-app" not in message and "memoryMb" not in message
    with pytest.raises(ValidationError) as caught:
        StackSettings.model_validate(config)
    assert "input_value" not in str(caught.value), "pydantic's own text dumps the settings"


@pytest.mark.parametrize(
    ("given", "seen"),
    [(4, "4"), (0.5, "0.5"), (True, "true"), (False, "false"), ("4", "4"), ("", "")],
)
def test_env_numbers_and_booleans_are_taken_as_text_like_compose(given: object, seen: str) -> None:
    settings = StackSettings.model_validate(changed(backend={"env": {"WORKERS": given}}))
    assert settings.backend.env == {"WORKERS": seen}


def test_a_build_argument_number_is_taken_as_text() -> None:
    settings = StackSettings.model_validate(
        changed(backend={"build": {**BUILD, "args": {"NODE_MAJOR": 20}}})
    )
    assert settings.backend.build is not None
    assert settings.backend.build.args == {"NODE_MAJOR": "20"}


@pytest.mark.parametrize(("given", "kind"), [([1, 2], "a list"), ({"a": 1}, "an object")])
def test_an_env_value_that_cannot_be_text_names_the_key_and_a_fix_that_works(
    given: object, kind: str
) -> None:
    message = failing(changed(backend={"env": {"WORKERS": given}}))
    assert (
        f"astats:backend.env.WORKERS: is {kind}, but an environment value is text, a number or "
        "true/false; fix: pulumi config set --path 'astats:backend.env.WORKERS' <value>"
    ) in message
