"""The nginx.conf each committed stack ships is exactly the reviewed text under golden/.

The program runs on mocks with the stack's own Pulumi.<stack>.yaml (and once with every
setting the renderer reads changed), so the text is what `pulumi up` would upload, whatever
path the settings take to the renderer. A deliberate change to the config shows up here as a
diff to review; the golden file changes in the same commit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.pulumi_harness import DEV_SECRETS, ROOT, evaluate
from tests.support.golden import assert_matches_golden

GOLDEN = Path(__file__).resolve().parent / "golden"
OFFSITE_SECRETS = {"backupS3AccessKeyId": "AKIA-golden", "backupS3SecretAccessKey": "golden"}


def stack_settings(stack: str) -> dict[str, Any]:
    data = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())["config"]
    return {k.removeprefix("astats:"): v for k, v in data.items() if k.startswith("astats:")}


def every_option_changed() -> dict[str, Any]:
    """The dev stack with each setting the renderer reads away from its default."""
    settings = stack_settings("dev")
    settings["nginx"] = {
        **settings["nginx"],
        "clientMaxBodySize": "1m",
        "proxyReadTimeoutS": 90,
        "gzip": False,
        "staticCacheDays": 0,
        "websocket": {"path": "/cockpit/ws", "readTimeoutS": 600, "sendTimeoutS": 120},
    }
    settings["backend"] = {**settings["backend"], "apiPrefixes": ["/v1/", "/", "/v1/", "/docs"]}
    return settings


CASES = {
    "dev": ("dev", stack_settings("dev")),
    "prod": ("prod", stack_settings("prod")),
    "every-option": ("dev", every_option_changed()),
}


def shipped_nginx_conf(case: str) -> str:
    stack, settings = CASES[case]
    graph = evaluate(settings, DEV_SECRETS | OFFSITE_SECRETS, stack=stack)
    return graph.files(graph.containers()["nginx"])["nginx.conf"]


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_shipped_nginx_conf_is_the_reviewed_one(case: str) -> None:
    assert_matches_golden(GOLDEN / f"nginx.{case}.conf", shipped_nginx_conf(case), "rendered")
