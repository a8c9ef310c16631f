"""The scheduler's restore drills and failure alerts, as the program configures them."""

from __future__ import annotations

import json
from typing import Any

import pytest

from components.config import ConfigError
from tests.pulumi_harness import DEV_SECRETS, Graph, dev_config, evaluate

WEBHOOK_FILE = "ASTATS_ALERT_WEBHOOK_URL"


def scheduler_graph(settings: dict[str, Any], secrets: dict[str, str] | None = None) -> Graph:
    return evaluate(settings, DEV_SECRETS | (secrets or {}))


def scheduler(settings: dict[str, Any], secrets: dict[str, str] | None = None) -> Any:
    return scheduler_graph(settings, secrets).containers()["backup"]


def with_backup(**backup: Any) -> dict[str, Any]:
    settings = dev_config()
    settings["backup"] = {**settings["backup"], **backup}
    return settings


def test_drills_run_after_each_backup_unless_spaced_or_turned_off() -> None:
    default = scheduler(dev_config()).inputs["command"]
    assert not any(a.startswith(("--drill", "--no-drill")) for a in default)
    spaced = scheduler(with_backup(drillEveryMinutes=720)).inputs["command"]
    assert "--drill-every-minutes=720" in spaced
    assert "--no-drill" in scheduler(with_backup(drills=False)).inputs["command"]


def test_a_plain_webhook_reaches_the_scheduler_as_a_secret_file_and_may_leave_the_host() -> None:
    url = "https://alerts.example.org/hooks/astats"
    graph = scheduler_graph(with_backup(alerts={"webhookUrl": url}))
    container = graph.containers()["backup"]
    assert graph.files(container)[WEBHOOK_FILE] == url
    wire = graph.files_step(container).wire["stdin"]
    assert "4dabf18193072939515e22adb298388d" in json.dumps(wire), "the content is a secret"
    assert not any(url in env for env in container.inputs.get("envs", []))
    assert len(container.inputs["networksAdvanced"]) == 2, "data network plus the edge"


def test_without_alerts_or_offsite_the_scheduler_stays_on_the_internal_network() -> None:
    graph = scheduler_graph(dev_config())
    container = graph.containers()["backup"]
    assert WEBHOOK_FILE not in graph.files(container)
    assert len(container.inputs["networksAdvanced"]) == 1


def test_a_webhook_with_a_token_goes_in_the_secret() -> None:
    token_url = "https://hooks.example.org/services/T000/B000?token=Sentinel-TOKEN-77"
    with pytest.raises(ConfigError) as caught:
        evaluate(with_backup(alerts={"webhookUrl": token_url}), DEV_SECRETS)
    message = str(caught.value)
    assert "astats:backup.alerts.webhookUrl" in message
    assert "pulumi config set --secret astats:backupAlertWebhookUrl" in message
    assert "Sentinel-TOKEN-77" not in message

    graph = scheduler_graph(dev_config(), {"backupAlertWebhookUrl": token_url})
    container = graph.containers()["backup"]
    assert graph.files(container)[WEBHOOK_FILE] == token_url
    everything_else = json.dumps([container.inputs.get("envs"), container.inputs["command"]])
    assert "Sentinel-TOKEN-77" not in everything_else


def test_the_webhook_secret_must_be_encrypted_and_not_doubled() -> None:
    with pytest.raises(ConfigError, match="stored in plain text"):
        evaluate(dev_config(), DEV_SECRETS, plaintext={"backupAlertWebhookUrl": "https://x.org/h"})
    with pytest.raises(ConfigError, match="both set"):
        evaluate(
            with_backup(alerts={"webhookUrl": "https://a.example.org/h"}),
            DEV_SECRETS | {"backupAlertWebhookUrl": "https://b.example.org/h?t=1"},
        )


def test_a_webhook_must_be_http() -> None:
    with pytest.raises(ConfigError, match="http:// or https://"):
        evaluate(with_backup(alerts={"webhookUrl": "ftp://x.example.org/h"}), DEV_SECRETS)
