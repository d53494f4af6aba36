"""The running local stack, as the command line and the tests reach it: its outputs, an AWS client
for it, posting webhooks to it, and what is still on its way through it."""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tools.cli import CommandError
from tools.template import ROOT

WEBHOOKS = ROOT / "events" / "webhooks"


# --- the running stack -------------------------------------------------------------------------------


def state_dir() -> Path:
    return Path(os.environ.get("EBBOT_LOCAL_DIR", ROOT / ".local"))


def running_outputs() -> dict[str, Any]:
    """outputs.json of the running local stack, or a clear error when it is not running."""
    path = state_dir() / "outputs.json"
    not_running = "the local stack is not running: start it with `make run` (or `python -m tools run`) first"
    if not path.exists():
        raise CommandError(not_running)
    outputs: dict[str, Any] = json.loads(path.read_text())
    try:
        base = outputs["WebhookUrl"].rsplit("/webhook", 1)[0]
        with urllib.request.urlopen(f"{base}/health", timeout=2):  # noqa: S310 (loopback URL we wrote)
            pass
    except (urllib.error.URLError, OSError):
        raise CommandError(not_running) from None
    return outputs


def aws_client(outputs: dict[str, Any], service: str) -> Any:
    import boto3

    return boto3.client(
        service,
        endpoint_url=outputs["AwsEndpointUrl"],
        region_name=outputs["Region"],
        aws_access_key_id="local",
        aws_secret_access_key="local",  # noqa: S106 (moto)
    )


def target_clients(args: Any, services: tuple[str, ...]) -> tuple[dict[str, Any], list[Any]]:
    """The outputs of the stack a command targets and a client per service: the running local stack
    (`--local`), or a deployed one (`--stack NAME`, `--region`; the usual AWS profile)."""
    if args.local:
        outputs = running_outputs()
        return outputs, [aws_client(outputs, service) for service in services]
    import boto3

    session = boto3.session.Session(region_name=args.region)
    stack = session.client("cloudformation").describe_stacks(StackName=args.stack)["Stacks"][0]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    return outputs, [session.client(service) for service in services]


def post(url: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(  # noqa: S310 (loopback URL)
        url, data=body, method="POST", headers={"content-type": "application/json", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def sample_files() -> list[Path]:
    """The samples in the order a conversation produces them (by their own timestamp)."""
    files = list(WEBHOOKS.glob("*.json"))
    return sorted(files, key=lambda p: (json.loads(p.read_text()).get("timestamp", 0), p.name))


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 (loopback URLs we wrote)
        return json.loads(response.read())


def pipeline_status(outputs: dict[str, Any], *, take_latencies: bool = False) -> dict[str, Any]:
    """Events on their way: moto's Lambda-target deliveries, and each function's queue and runs.
    With take_latencies, each function's receipt-to-success latencies since the last take."""
    routes = json.loads((state_dir() / "routes.json").read_text())
    state = json.loads((state_dir() / "state.json").read_text())
    names = {f["arn"]: logical for logical, f in state["functions"].items()}
    query = "?latencies=take" if take_latencies else ""
    return {
        "deliveries": _get_json(f"{outputs['AwsEndpointUrl']}/_local/deliveries"),
        "functions": {names.get(arn, arn): _get_json(f"{url}/status{query}") for arn, url in routes.items()},
    }


def in_flight(status: dict[str, Any]) -> int:
    return int(status["deliveries"]["pending"]) + sum(
        int(f["queued"]) + int(f["running"]) for f in status["functions"].values()
    )


def wait_until_drained(outputs: dict[str, Any], timeout_s: float = 60) -> None:
    """Until no event is on its way to, waiting in or running in a function, twice in a row."""
    deadline = time.monotonic() + timeout_s
    quiet = 0
    while time.monotonic() < deadline:
        quiet = quiet + 1 if in_flight(pipeline_status(outputs)) == 0 else 0
        if quiet >= 2:
            return
        time.sleep(0.05)
    raise CommandError(f"events still waiting after {timeout_s:.0f} s")


def stored(outputs: dict[str, Any]) -> tuple[list[list[str]], list[str]]:
    """What the stack holds: a row per chat (id, status, handled by, messages, of which known only
    from the transcript, scenario runs), and the transcripts' keys."""
    from boto3.dynamodb.types import TypeDeserializer

    ddb, s3 = aws_client(outputs, "dynamodb"), aws_client(outputs, "s3")
    deserializer = TypeDeserializer()
    chats: dict[str, dict[str, Any]] = {}
    for page in ddb.get_paginator("scan").paginate(TableName=outputs["TableName"]):
        for raw in page["Items"]:
            item = {k: deserializer.deserialize(v) for k, v in raw.items()}
            if not item["pk"].startswith("CHAT#"):  # the user index and tombstones are not chats
                continue
            chat = chats.setdefault(item["pk"][5:], {"messages": 0, "lost": 0, "runs": 0, "status": "-"})
            kind = item["sk"].split("#", 1)[0]
            if kind == "CHAT":
                chat["status"] = item.get("status", "-")
                chat["handledBy"] = item.get("handledBy", "-")
            elif kind == "MSG":
                chat["messages"] += 1
                chat["lost"] += "sources" not in item
            elif kind == "RUN":
                chat["runs"] += 1
    rows = [
        [chat_id, c["status"], c.get("handledBy", "-"), str(c["messages"]), str(c["lost"]), str(c["runs"])]
        for chat_id, c in sorted(chats.items())
    ]
    listing = s3.list_objects_v2(Bucket=outputs["DataBucketName"], Prefix="transcripts/").get("Contents", [])
    return rows, [o["Key"] for o in listing]


STORED_COLUMNS = ["chat", "status", "handled by", "messages", "from transcript only", "scenario runs"]


def show_stored(outputs: dict[str, Any]) -> None:
    """What the stack holds, as tables for a person to read."""
    from tools.cli import table

    rows, transcripts = stored(outputs)
    table(f"{len(rows)} chat(s) in table {outputs['TableName']}", STORED_COLUMNS, rows)
    table(
        f"{len(transcripts)} transcript(s) in s3://{outputs['DataBucketName']}/",
        ["key"],
        [[k] for k in transcripts],
    )
