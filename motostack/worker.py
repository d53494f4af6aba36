"""One function of the template in a process of its own, with the environment the template gives it.

    python -m motostack.worker STATE_FILE FUNCTION_LOGICAL_ID [MODULE_TO_PRELOAD ...]

Every function serves Lambda's Invoke API on a free port (EventBridge's deliveries arrive there, see
motostack.lambda_targets) and says where in its ready file; the function behind the HTTP API also
serves its routes. A process per function keeps each function's environment (and whatever its
libraries read from it at import) its own, as in Lambda, and lets the functions use every core.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any


def _report(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _preload(modules: list[str]) -> None:
    """Import the heavy libraries while the stack is still being deployed. Only libraries that read
    nothing of the function's environment at import belong here: the function's own modules are
    imported once its environment is set."""
    import importlib

    import boto3  # noqa: F401

    for module in modules:
        importlib.import_module(module)


def _launcher() -> int:
    """The launcher's process id: given in the environment, as by the time this runs the launcher
    may be gone already (and the parent then another process)."""
    return int(os.environ.get("MOTOSTACK_PARENT_PID") or os.getppid())


def _wait_for(state_file: Path, parent: int, timeout_s: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while not state_file.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{state_file} did not appear")
        if os.getppid() != parent:  # the launcher is gone before the stack was up
            os._exit(0)
        time.sleep(0.05)
    state: dict[str, Any] = json.loads(state_file.read_text())
    return state


def _wait_while_parent_lives(stop: threading.Event, parent: int) -> None:
    while not stop.wait(1.0):
        if os.getppid() != parent:  # the launcher is gone: so are we
            return


def main(argv: list[str]) -> int:
    state_file, logical_id, preload = Path(argv[0]), argv[1], argv[2:]
    parent = _launcher()
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))  # until the function runs
    _preload(preload)
    state = _wait_for(state_file, parent)
    function = state["functions"][logical_id]
    os.environ.update({k: str(v) for k, v in function["environment"].items()})
    os.environ.update(state["worker_environment"])

    # Imported only now: Powertools reads its settings from the environment at import.
    import boto3

    from motostack.runtime import (
        AsyncInvoker,
        EventQueue,
        HandlerImportError,
        Invoker,
        Route,
        serve_http_api,
        serve_invoke,
    )

    # Here up to `concurrency` invocations share one process (Lambda gives each its own execution
    # environment), so one invocation's flush can publish another's metrics and leave the other
    # nothing to flush. Powertools then warns "No application metrics to publish": an artefact of
    # this runtime (our handlers add a metric on every normal path), not something to show a newcomer.
    warnings.filterwarnings("ignore", message="No application metrics to publish", category=UserWarning)
    try:
        invoker = Invoker(function)
    except HandlerImportError as exc:
        _report(f"error: {exc}")
        return 3
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the launcher, which stops us
    report = _report if state.get("verbose", True) else (lambda _: None)

    if logical_id == state.get("http_function"):
        routes = [Route(method, template) for method, template in state["http_routes"]]
        try:
            serve_http_api(invoker, int(state["http_port"]), routes, report=report)
        except OSError as exc:
            _report(f"error: cannot listen on 127.0.0.1:{state['http_port']}: {exc}")
            return 4
    async_invoker = AsyncInvoker(
        invoker, boto3.client("sqs"), retry_delay_s=float(state.get("retry_delay_s", 0.2)), report=report
    )
    events = EventQueue(
        async_invoker,
        concurrency=int(state.get("concurrency", 8)),
        latency_since=tuple(state.get("latency_since") or ()),
    )
    invoke = serve_invoke(invoker, events, report=report)
    ready = {"invoke_url": f"http://127.0.0.1:{invoke.server_address[1]}"}
    partial = Path(state["ready_dir"], f"{logical_id}.partial")
    partial.write_text(json.dumps(ready))
    partial.rename(Path(state["ready_dir"], logical_id))
    _wait_while_parent_lives(stop, parent)
    return 0  # events still queued here are lost with the process, as the whole local stack's state is


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
