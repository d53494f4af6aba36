"""moto's server for a motostack stack: moto's own apps, served so that a whole stack can run on it.

- Atomicity: DynamoDB applies each request to an item atomically, moto on a threaded server does
  not (two concurrent UpdateItems that both create an item can lose one's attributes). Requests
  are applied one at a time (OneAtATime). moto holds the interpreter lock for nearly all of a
  request anyway, so this costs little; clients must not long-poll SQS (a wait would hold the lock).
- Keep-alive: the server is waitress, not moto's (werkzeug's development server), which closes the
  connection after every response. One difference: waitress drops request headers with an
  underscore in their name, as most servers do, where moto's keeps them for S3 metadata keys such
  as `x-amz-meta-my_key`.
- Lambda targets: moto raises NotImplementedError when a matched rule targets a Lambda function.
  Such events are handed to the functions' workers over Lambda's Invoke API instead, with the
  target's retry policy and DLQ (motostack.lambda_targets); `GET /_local/deliveries` tells how
  many are still on their way, and where moto's time goes per operation.
- Speed: moto as it ships, unless the launcher passes MOTOSTACK_SPEEDUPS (Settings.speedups):
  then the patches of motostack.speedups that it names.

    python -m motostack.moto_server PORT
"""

from __future__ import annotations

import cProfile
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from motostack import speedups

# Held while moto's state is read or changed: by each request, and by the Lambda-target delivery
# threads when they dead-letter an event.
MOTO_LOCK = threading.Lock()
STATUS_PATH = "/_local/deliveries"
# MOTOSTACK_PROFILE=FILE: profile moto's request handling, written to FILE when the server stops
# (for finding moto's next hot spot: python -m pstats FILE).
PROFILER = cProfile.Profile() if os.environ.get("MOTOSTACK_PROFILE") else None


class OneAtATime:
    """WSGI middleware: one request inside moto at a time; and the delivery status."""

    def __init__(self, app: Callable[..., Iterable[bytes]], status: Callable[[], dict[str, int]]) -> None:
        self._app = app
        self._status = status
        # operation -> [requests, seconds inside moto]: where moto's one core goes.
        self._busy: dict[str, list[float]] = {}

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        if environ.get("PATH_INFO") == STATUS_PATH:
            with MOTO_LOCK:
                busy = {op: [int(n), round(s, 3)] for op, (n, s) in sorted(self._busy.items())}
            body = json.dumps({**self._status(), "requests": busy}).encode()
            start_response(
                "200 OK", [("content-type", "application/json"), ("content-length", str(len(body)))]
            )
            return [body]
        operation = environ.get("HTTP_X_AMZ_TARGET") or (
            f"{environ.get('REQUEST_METHOD')} {environ.get('HTTP_HOST', '').split('.')[0]}"
        )
        with MOTO_LOCK:
            started = time.perf_counter()
            if PROFILER is not None:
                PROFILER.enable()
            try:
                return list(self._app(environ, start_response))
            finally:
                if PROFILER is not None:
                    PROFILER.disable()
                entry = self._busy.setdefault(operation, [0, 0.0])
                entry[0] += 1
                entry[1] += time.perf_counter() - started


def dead_letter(queue_arn: str, body: str, attributes: dict[str, Any]) -> None:
    """Send to an SQS queue of this server, as EventBridge sends to a rule target's DLQ."""
    from moto.sqs.models import sqs_backends

    _, _, _, region, account, name = queue_arn.split(":", 5)
    with MOTO_LOCK:
        sqs_backends[account][region].send_message(
            queue_name=name, message_body=body, message_attributes=attributes
        )


def main(argv: list[str]) -> None:
    # The launcher passes Settings.speedups (motostack.speedups.choose); moto as it ships without it.
    speedups.apply(os.environ.get("MOTOSTACK_SPEEDUPS", "none"))
    import waitress
    from moto.moto_server import werkzeug_app
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication

    # All state is in memory and goes with the process: nothing to flush, so leave at once.
    def leave(*_: Any) -> None:
        if PROFILER is not None:
            PROFILER.dump_stats(os.environ["MOTOSTACK_PROFILE"])
        os._exit(0)

    signal.signal(signal.SIGTERM, leave)
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)  # "task queue depth": moto is serial
    from motostack.deploy import quiet_about_skipped_types
    from motostack.lambda_targets import forwarder_from_env, patch_lambda_targets

    quiet_about_skipped_types()

    forwarder = forwarder_from_env(dead_letter)
    dispatcher = DomainDispatcherApplication(werkzeug_app.create_backend_app)
    with patch_lambda_targets(forwarder.dispatch):
        waitress.serve(
            OneAtATime(dispatcher, forwarder.stats),
            host="127.0.0.1",
            port=int(argv[0]),
            threads=8,  # requests wait for moto's lock in these; the bodies are read before
            connection_limit=1000,  # every function keeps a pool of connections per client
            asyncore_use_poll=True,
            ident="moto",
            _quiet=True,
        )


if __name__ == "__main__":
    main(sys.argv[1:])
