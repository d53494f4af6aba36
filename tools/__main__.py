"""The project's command line.

python -m tools run                   start the local stack in the foreground (make run)
python -m tools demo                  start it, post every sample, show what was stored, stop (make demo)
python -m tools send [FILE...]        post samples (default: events/webhooks/*) to the running stack
python -m tools show                  what the running stack has stored
python -m tools invoke FUNCTION -e EVENT   like `sam local invoke`, without Docker, against the local stack
python -m tools redrive [--dry-run]   re-deliver spilled and dead-lettered events (local stack or AWS)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tools.stack import ROOT

WEBHOOKS = ROOT / "events" / "webhooks"


class CommandError(Exception):
    """A message for the user and a non-zero exit."""


# --- the running stack -------------------------------------------------------------------------------


def _state_dir() -> Path:
    return Path(os.environ.get("EBBOT_LOCAL_DIR", ROOT / ".local"))


def running_outputs() -> dict[str, Any]:
    """outputs.json of the running local stack, or a clear error when it is not running."""
    path = _state_dir() / "outputs.json"
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


def _aws(outputs: dict[str, Any], service: str) -> Any:
    import boto3

    return boto3.client(
        service,
        endpoint_url=outputs["AwsEndpointUrl"],
        region_name=outputs["Region"],
        aws_access_key_id="local",
        aws_secret_access_key="local",  # noqa: S106 (moto)
    )


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
    routes = json.loads((_state_dir() / "routes.json").read_text())
    state = json.loads((_state_dir() / "state.json").read_text())
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


def stored_summary(outputs: dict[str, Any]) -> str:
    """Chats with their status and counts, and the transcripts in the bucket."""
    from boto3.dynamodb.types import TypeDeserializer

    ddb, s3 = _aws(outputs, "dynamodb"), _aws(outputs, "s3")
    deserializer = TypeDeserializer()
    chats: dict[str, dict[str, Any]] = {}
    for page in ddb.get_paginator("scan").paginate(TableName=outputs["TableName"]):
        for raw in page["Items"]:
            item = {k: deserializer.deserialize(v) for k, v in raw.items()}
            chat = chats.setdefault(item["pk"][5:], {"messages": 0, "lost": 0, "runs": 0, "status": "-"})
            kind = item["sk"].split("#", 1)[0]
            if kind == "CHAT":
                chat["status"] = item.get("status", "-")
                chat["handledBy"] = item.get("handledBy", "-")
                chat["transcript"] = item.get("transcriptKey")
            elif kind == "MSG":
                chat["messages"] += 1
                chat["lost"] += "sources" not in item
            elif kind == "RUN":
                chat["runs"] += 1
    lines = [f"{len(chats)} chat(s) in table {outputs['TableName']}:"]
    for chat_id, c in sorted(chats.items()):
        lines.append(
            f"  {chat_id}  status={c['status']} handled_by={c.get('handledBy', '-')} "
            f"messages={c['messages']} "
            f"(from transcript only: {c['lost']}) scenario_runs={c['runs']}"
        )
    keys = [
        o["Key"]
        for o in s3.list_objects_v2(Bucket=outputs["DataBucketName"], Prefix="transcripts/").get(
            "Contents", []
        )
    ]
    lines.append(f"{len(keys)} transcript(s) in s3://{outputs['DataBucketName']}/:")
    lines.extend(f"  {key}" for key in keys)
    return "\n".join(lines)


# --- commands ----------------------------------------------------------------------------------------


def cmd_run(_: argparse.Namespace) -> int:
    from tools.local.launcher import Settings, banner, start

    stack = start(Settings.from_env())
    print(banner(stack), flush=True)
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    try:
        while not stopping:
            dead = stack.check_alive()
            if dead:
                print(f"error: {dead} stopped; see {stack.settings.state_dir / 'logs'}/", file=sys.stderr)
                return 1
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        print("stopping...", flush=True)
        stack.stop()
    return 0


def cmd_demo(_: argparse.Namespace) -> int:
    from tools.local.launcher import Settings, free_port, start

    settings = Settings.from_env()
    if "EBBOT_LOCAL_WEBHOOK_PORT" not in os.environ:
        settings.webhook_port = free_port()
    if "EBBOT_LOCAL_AWS_PORT" not in os.environ:
        settings.aws_port = free_port()
    print("starting the local stack...", flush=True)
    stack = start(settings)
    try:
        outputs = stack.outputs
        for path in sample_files():
            status, body = post(outputs["WebhookUrl"], path.read_bytes())
            print(
                f"POST {path.name:<28} -> {status} "
                f"{body.get('status', body.get('error', {}).get('code', ''))}"
            )
            if status != 202:
                raise CommandError(f"{path.name} was not accepted")
        wait_until_drained(outputs)
        print()
        print(stored_summary(outputs))
    finally:
        stack.stop()
    return 0


def cmd_send(args: argparse.Namespace) -> int:
    outputs = running_outputs()
    files = [Path(f) for f in args.files] or sample_files()
    failures = 0
    for path in files:
        status, body = post(outputs["WebhookUrl"], path.read_bytes())
        failures += status != 202
        print(f"POST {path.name:<28} -> {status} {json.dumps(body)}")
    wait_until_drained(outputs)
    print()
    print(stored_summary(outputs))
    return 1 if failures else 0


def cmd_show(_: argparse.Namespace) -> int:
    print(stored_summary(running_outputs()))
    return 0


def cmd_invoke(args: argparse.Namespace) -> int:
    """Run one function of the template with an event file, in this process, against the local stack."""
    running_outputs()
    state = json.loads((_state_dir() / "state.json").read_text())
    functions = state["functions"]
    if args.function not in functions:
        raise CommandError(
            f"no function {args.function!r} in the template; there are: {', '.join(sorted(functions))}"
        )
    function = functions[args.function]
    os.environ.update({k: str(v) for k, v in function["environment"].items()})
    os.environ.update(state["worker_environment"])
    event = json.loads(Path(args.event).read_text()) if args.event != "-" else json.load(sys.stdin)
    from tools.local.runtime import Invoker

    # As `sam local invoke`: the function's logs on stderr, its result alone on stdout.
    with contextlib.redirect_stdout(sys.stderr):
        result = Invoker(function).invoke(event)
    print(json.dumps(result, indent=2, default=str))
    return 0


def cmd_redrive(args: argparse.Namespace) -> int:
    from tools.redrive import main as redrive_main

    return redrive_main(args)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools", description=(__doc__ or "").split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("run", help="start the local stack in the foreground").set_defaults(func=cmd_run)
    commands.add_parser("demo", help="start, post every sample, show what was stored, stop").set_defaults(
        func=cmd_demo
    )
    send = commands.add_parser("send", help="post samples to the running local stack")
    send.add_argument("files", nargs="*", help="webhook bodies (default: every events/webhooks sample)")
    send.set_defaults(func=cmd_send)
    commands.add_parser("show", help="what the running local stack has stored").set_defaults(func=cmd_show)
    invoke = commands.add_parser("invoke", help="run one function with an event file (like sam local invoke)")
    invoke.add_argument("function", help="logical id in template.yaml, e.g. ChatsFunction")
    invoke.add_argument(
        "-e", "--event", required=True, help="event file, e.g. events/eventbridge/chat.create.json"
    )
    invoke.set_defaults(func=cmd_invoke)
    redrive = commands.add_parser("redrive", help="re-deliver spilled and dead-lettered events")
    redrive.add_argument("--local", action="store_true", help="against the running local stack")
    redrive.add_argument("--stack", help="CloudFormation stack name on AWS (reads its outputs)")
    redrive.add_argument("--dry-run", action="store_true", help="count, deliver nothing")
    redrive.set_defaults(func=cmd_redrive)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except CommandError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        from tools.local.launcher import LocalStackError

        if isinstance(exc, LocalStackError):
            print(f"error: {exc}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
