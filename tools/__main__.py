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
from pathlib import Path

from tools.running import (
    CommandError,
    post,
    running_outputs,
    sample_files,
    state_dir,
    stored_summary,
    wait_until_drained,
)

# --- commands ----------------------------------------------------------------------------------------


def cmd_run(_: argparse.Namespace) -> int:
    from tools.localstack import banner, settings_from_env, start

    stack = start(*settings_from_env())
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
    from motostack.launcher import free_port
    from tools.localstack import settings_from_env, start

    settings, token = settings_from_env()
    if "EBBOT_LOCAL_WEBHOOK_PORT" not in os.environ:
        settings.http_port = free_port()
    if "EBBOT_LOCAL_AWS_PORT" not in os.environ:
        settings.aws_port = free_port()
    print("starting the local stack...", flush=True)
    stack = start(settings, token)
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
    state = json.loads((state_dir() / "state.json").read_text())
    functions = state["functions"]
    if args.function not in functions:
        raise CommandError(
            f"no function {args.function!r} in the template; there are: {', '.join(sorted(functions))}"
        )
    function = functions[args.function]
    os.environ.update({k: str(v) for k, v in function["environment"].items()})
    os.environ.update(state["worker_environment"])
    event = json.loads(Path(args.event).read_text()) if args.event != "-" else json.load(sys.stdin)
    from motostack.runtime import Invoker

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
    redrive.add_argument(
        "--wait",
        type=int,
        default=2,
        choices=range(1, 21),
        metavar="SECONDS",
        help="each queue's long poll on AWS, 1-20 (default 2): an empty queue is known empty after one",
    )
    redrive.set_defaults(func=cmd_redrive)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except CommandError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        from motostack.launcher import LocalStackError

        if isinstance(exc, LocalStackError):
            print(f"error: {exc}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
