"""moto's server for the local stack, with two documented changes.

1. Speed: moto matches EventBridge rules itself (we keep its matcher), but on every delivery to a
   target it re-parses the same few JSONPath expressions with jsonpath-ng, whose `parse` rebuilds
   its parser tables each time (about 13 ms a call, about 120 ms of CPU per matched target).
   Memoising `parse` lifts moto's 3-7 deliveries per second to well over a hundred. moto imports
   `parse` from `jsonpath_ng.ext` at call time, so replacing that attribute before the server
   starts is enough; parsed expressions are immutable, so sharing them is safe.
2. Speed: moto's SQS checks each received message's retention by computing every attribute of the
   queue (message counts included, each a pass over the queue), so a receive costs O(depth) per
   message and a backlog feeds itself. The check reads the retention period directly instead.
3. Speed: moto's request dispatcher lists its own package directory on disk on every request to
   tell service names from hosts; the listing is taken once.
4. Atomicity: DynamoDB applies each request to an item atomically, moto's threaded server does
   not (two concurrent UpdateItems that both create an item can lose one's attributes). Requests
   are applied one at a time. moto holds the interpreter lock for nearly all of a request anyway,
   so this costs little; clients must not long-poll SQS (a wait would hold the lock).

    python -m tools.local.moto_server PORT
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterable
from typing import Any


def apply_speedups() -> None:
    import jsonpath_ng.ext
    from moto.core.utils import unix_time
    from moto.sqs.models import SQSBackend

    if not hasattr(jsonpath_ng.ext.parse, "cache_info"):  # type: ignore[attr-defined]
        jsonpath_ng.ext.parse = functools.lru_cache(maxsize=512)(jsonpath_ng.ext.parse)  # type: ignore[attr-defined]

    def is_message_valid_based_on_retention_period(self: Any, queue_name: str, message: Any) -> bool:
        retention_period = int(self.get_queue(queue_name).message_retention_period)
        return bool(retention_period + message.sent_timestamp / 1000 > unix_time())

    SQSBackend.is_message_valid_based_on_retention_period = is_message_valid_based_on_retention_period  # type: ignore[method-assign]

    from moto import backends

    modules = tuple(backends.list_of_moto_modules())
    backends.list_of_moto_modules = lambda: modules


class OneAtATime:
    """WSGI middleware: one request inside moto at a time."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self._app = app
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        with self._lock:
            return list(self._app(environ, start_response))


def main(argv: list[str]) -> None:
    apply_speedups()
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import run_simple

    # All state is in memory and goes with the process: nothing to flush, so leave at once.
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    # werkzeug logs a line per request: a tenth of moto's time under load, and nobody reads it.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    app = DomainDispatcherApplication(create_backend_app)
    run_simple("127.0.0.1", int(argv[0]), OneAtATime(app), threaded=True, request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main(sys.argv[1:])
