"""The Ebbot webhook pipeline's command line: run it on this machine, and operate it here or on AWS.

    ebbot-webhooks run          (or python -m tools run) the whole pipeline on localhost, until Ctrl-C
    ebbot-webhooks demo         start it, post every sample, show what was stored, stop
    ebbot-webhooks send         post samples to the running local stack, show what was stored
    ebbot-webhooks show         what the running local stack has stored
    ebbot-webhooks invoke       run one function with an event file, like `sam local invoke`
    ebbot-webhooks redrive      re-deliver spilled and dead-lettered events (local stack or AWS)
    ebbot-webhooks erase        erase one chat everywhere it is kept, and keep it erased
    ebbot-webhooks export       everything stored about one chat, as one JSON document
    ebbot-webhooks find         the chats of an Ebbot user id

`ebbot-webhooks COMMAND --help` says more, with an example. Exit codes: tools/cli.py.
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
from typing import Any

from tools import cli
from tools.cli import CommandError
from tools.running import post, running_outputs, sample_files, show_stored, state_dir, wait_until_drained

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
        show_stored(outputs)
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
    show_stored(outputs)
    return cli.NOT_ALL_DONE if failures else cli.DONE


def cmd_show(_: argparse.Namespace) -> int:
    show_stored(running_outputs())
    return cli.DONE


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
    try:
        event = json.loads(Path(args.event).read_text()) if args.event != "-" else json.load(sys.stdin)
    except OSError as exc:
        raise CommandError(f"cannot read {args.event}: {exc.strerror}") from None
    except ValueError:
        raise CommandError(f"{args.event} is not JSON") from None
    from motostack.runtime import Invoker

    # As `sam local invoke`: the function's logs on stderr, its result alone on stdout.
    with contextlib.redirect_stdout(sys.stderr):
        result = Invoker(function).invoke(event)
    print(json.dumps(result, indent=2, default=str))
    return 0


def cmd_redrive(args: argparse.Namespace) -> int:
    from tools.redrive import main as redrive_main

    return redrive_main(args)


def cmd_privacy(args: argparse.Namespace) -> int:
    from tools import privacy

    command: int = {"erase": privacy.cmd_erase, "export": privacy.cmd_export, "find": privacy.cmd_find}[
        args.command
    ](args)
    return command


def _where(parser: argparse.ArgumentParser) -> None:
    """--local or --stack NAME (with --region): the targets of redrive, erase, export and find."""
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--local", action="store_true", help="the running local stack")
    where.add_argument("--stack", metavar="NAME", help="a deployed stack: its CloudFormation name")
    parser.add_argument("--region", help="the deployed stack's region (default: your profile's)")


def _command(commands: Any, name: str, summary: str, example: str, func: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = commands.add_parser(
        name,
        help=summary,
        description=f"{summary[0].upper()}{summary[1:]}.\n\nexample:\n  {example}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(func=func)
    return parser


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="ebbot-webhooks",
        description=(__doc__ or "").strip(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _command(
        commands,
        "run",
        "start the whole pipeline on localhost in the foreground, until Ctrl-C (make run)",
        "EBBOT_LOCAL_WEBHOOK_PORT=3001 ebbot-webhooks run",
        cmd_run,
    )
    _command(
        commands,
        "demo",
        "start the local stack on free ports, post every sample, show what was stored, stop",
        "ebbot-webhooks demo",
        cmd_demo,
    )
    send = _command(
        commands,
        "send",
        "post webhooks to the running local stack and show what was stored",
        "ebbot-webhooks send events/webhooks/chat.create.json",
        cmd_send,
    )
    send.add_argument("files", nargs="*", metavar="FILE", help="webhook bodies (default: every sample)")
    _command(
        commands, "show", "show what the running local stack has stored", "ebbot-webhooks show", cmd_show
    )
    invoke = _command(
        commands,
        "invoke",
        "run one function of the template with an event file against the running local stack, "
        "like `sam local invoke` without Docker: its result on stdout, its logs on stderr",
        "ebbot-webhooks invoke ChatsFunction -e events/eventbridge/chat.create.json",
        cmd_invoke,
    )
    invoke.add_argument("function", metavar="FUNCTION", help="its logical id in template.yaml")
    invoke.add_argument(
        "-e", "--event", required=True, metavar="FILE", help="the event, as JSON (- for stdin)"
    )
    redrive = _command(
        commands,
        "redrive",
        "re-deliver spilled and dead-lettered events, each to where it failed, once the cause is fixed",
        "ebbot-webhooks redrive --stack ebbot-webhooks-prod --region eu-north-1 --dry-run",
        cmd_redrive,
    )
    _where(redrive)
    redrive.add_argument("--dry-run", action="store_true", help="count what waits, deliver nothing")
    redrive.add_argument(
        "--wait",
        type=int,
        default=2,
        choices=range(1, 21),
        metavar="SECONDS",
        help="each queue's long poll on AWS, 1-20 (default 2): an empty queue is known empty after one",
    )
    erase = _command(
        commands,
        "erase",
        "erase one chat: every item and every S3 object version that holds its data, then a "
        "tombstone so that nothing brings it back; prints a receipt of what was deleted, by kind",
        "ebbot-webhooks erase --chat 1672531200.420.50c9b6c7 --stack ebbot-webhooks-prod --dry-run",
        cmd_privacy,
    )
    erase.add_argument("--chat", required=True, metavar="ID", help="the chat id, as Ebbot sends it")
    _where(erase)
    erase.add_argument("--dry-run", action="store_true", help="count what would be deleted, delete nothing")
    settle = "wait for invocations in flight before a second pass (default 20: the functions' timeout)"
    erase.add_argument("--settle", type=float, default=20, metavar="SECONDS", help=settle)
    erase.add_argument("--json", action="store_true", help="the receipt as JSON")
    export = _command(
        commands,
        "export",
        "print everything stored about one chat as one JSON document: its state, messages in order, "
        "scenario runs and transcripts",
        "ebbot-webhooks export --chat 1672531200.420.50c9b6c7 --local -o chat.json",
        cmd_privacy,
    )
    export.add_argument("--chat", required=True, metavar="ID", help="the chat id, as Ebbot sends it")
    _where(export)
    export.add_argument("-o", "--output", metavar="FILE", help="write the document to FILE instead of stdout")
    find = _command(
        commands,
        "find",
        "list the chat ids of an Ebbot user id, from the user index (no scan); erased chats are left out",
        "ebbot-webhooks find --user 42 --stack ebbot-webhooks-prod",
        cmd_privacy,
    )
    find.add_argument(
        "--user", required=True, metavar="VALUE", help="the Ebbot user id, as the webhooks carry it"
    )
    _where(find)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)  # a wrong argument: argparse's message and exit code 2
    return cli.run(lambda: int(args.func(args)))


if __name__ == "__main__":
    sys.exit(main())
