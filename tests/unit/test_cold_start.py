"""What the template does for cold starts holds in a fresh interpreter, as Lambda starts one."""

from __future__ import annotations

import os

import pytest

from bench.coldstart_child import BENCH_ENV
from tests.conftest import python_in_functions
from tools.template import load_template

# Counts pydantic's package-metadata scans (its plugin lookup) while a handler is imported and its
# first webhooks are validated: the work of a cold start.
PROBE = """
import importlib.metadata, json, sys
scans = []
real = importlib.metadata.entry_points
importlib.metadata.entry_points = lambda *a, **k: scans.append(k) or real(*a, **k)
import ingest.app
from shared.contract.models import build_metadata
from shared.contract.models import parse_webhook
for name in ("chat.create", "chat.user.message", "chat.close"):
    raw = open(f"../events/webhooks/{name}.json", "rb").read()
    build_metadata(parse_webhook(json.loads(raw)), raw, received_ns=1, delivery_id="d")
print(len(scans))
"""


def _scans(extra_env: dict[str, str]) -> int:
    env = {k: v for k, v in os.environ.items() if k != "PYDANTIC_DISABLE_PLUGINS"}
    env.update(
        AWS_DEFAULT_REGION="us-east-1",
        POWERTOOLS_TRACE_DISABLED="true",
        EVENT_BUS_NAME="b",
        BUCKET_NAME="b",
        TOKEN_SECRET_ID="s",
        **extra_env,
    )
    return int(python_in_functions(PROBE, env).splitlines()[-1])


def test_functions_skip_pydantics_plugin_scan() -> None:
    variables = load_template()["Globals"]["Function"]["Environment"]["Variables"]
    assert _scans({"PYDANTIC_DISABLE_PLUGINS": variables["PYDANTIC_DISABLE_PLUGINS"]}) == 0


def test_without_the_setting_pydantic_scans_package_metadata() -> None:
    """The probe sees the scan when it happens (so the test above can fail)."""
    assert _scans({}) > 0


@pytest.mark.parametrize("name", ["PYDANTIC_DISABLE_PLUGINS", "POWERTOOLS_TRACE_DISABLED"])
def test_the_cold_start_benchmark_runs_with_the_templates_settings(name: str) -> None:
    variables = load_template()["Globals"]["Function"]["Environment"]["Variables"]
    value = variables[name]
    if name == "POWERTOOLS_TRACE_DISABLED":  # the benchmark's untraced run: Tracing=Disabled
        value = value["Fn::If"][2]
    assert BENCH_ENV[name] == value
