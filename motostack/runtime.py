"""Run one function of a template the way Lambda would, against moto.

- `Invoker` imports the handler named in the template and calls it with a Lambda-like context.
- `AsyncInvoker` adds what asynchronous invocation means: a handler that raises is retried as the
  function's EventInvokeConfig says (at most 2), then Lambda's invocation record goes to the
  on-failure destination queue; so does an event that waited longer than MaximumEventAgeInSeconds.
- `serve_invoke` is Lambda's Invoke API for one function (what EventBridge calls, through
  motostack.lambda_targets): InvocationType Event queues the event for `AsyncInvoker` and answers
  202; RequestResponse runs it and answers with its result. `GET /status` counts the queue.
- `serve_http_api` is the HTTP API in front of a function: its routes, as the template declares them.
"""

from __future__ import annotations

import base64
import importlib
import json
import queue
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

ACCOUNT = "123456789012"
# API Gateway's own limit on a request body.
API_GATEWAY_MAX_BODY = 10 * 1024 * 1024


class HandlerImportError(Exception):
    """The handler named in the template cannot be imported."""


@dataclass
class LambdaContext:
    function_name: str
    memory_limit_in_mb: int
    invoked_function_arn: str
    aws_request_id: str
    deadline_ms: int

    def get_remaining_time_in_millis(self) -> int:
        return max(0, self.deadline_ms - int(time.time() * 1000))


class Invoker:
    def __init__(self, function: dict[str, Any]) -> None:
        self.function = function
        module_name, _, attribute = function["handler"].rpartition(".")
        try:
            module = importlib.import_module(module_name)
            self._handler: Callable[..., Any] = getattr(module, attribute)
        except Exception as exc:
            raise HandlerImportError(
                f"{function['logical_id']}: cannot import handler {function['handler']!r}: "
                f"{type(exc).__name__}: {exc}"
            ) from exc

    def invoke(self, event: dict[str, Any]) -> Any:
        context = LambdaContext(
            function_name=self.function["name"],
            memory_limit_in_mb=int(self.function.get("memory", 256)),
            invoked_function_arn=self.function["arn"],
            aws_request_id=str(uuid.uuid4()),
            deadline_ms=int(time.time() * 1000) + 1000 * int(self.function.get("timeout_s", 15)),
        )
        return self._handler(event, context)


def invocation_record(
    function: dict[str, Any],
    event: dict[str, Any],
    error: BaseException | None,
    attempts: int,
    condition: str = "RetriesExhausted",
) -> dict[str, Any]:
    """Lambda's on-failure destination record for an asynchronous invocation that ran out of retries
    (or, with condition EventAgeExceeded and no error, waited too long to run at all)."""
    record: dict[str, Any] = {
        "version": "1.0",
        "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "requestContext": {
            "requestId": str(uuid.uuid4()),
            "functionArn": f"{function['arn']}:$LATEST",
            "condition": condition,
            "approximateInvokeCount": attempts,
        },
        "requestPayload": event,
    }
    if error is not None:
        record["responseContext"] = {
            "statusCode": 200,
            "executedVersion": "$LATEST",
            "functionError": "Unhandled",
        }
        # Only the error's type: its message could quote personal data from the event.
        record["responsePayload"] = {"errorType": type(error).__name__, "errorMessage": type(error).__name__}
    return record


class AsyncInvoker:
    """EventBridge -> Lambda semantics: asynchronous retries, then the on-failure destination."""

    def __init__(
        self,
        invoker: Invoker,
        sqs: Any,
        *,
        retry_delay_s: float = 0.2,
        report: Callable[[str], None] = print,
    ) -> None:
        self._invoker = invoker
        self._sqs = sqs
        self._retry_delay_s = retry_delay_s
        self._report = report

    def handle(self, event: dict[str, Any], queued_s: float = 0.0) -> bool:
        """True if the handler succeeded; False if the event went to the on-failure destination.
        `queued_s`: how long the event waited in the function's queue before this call."""
        function = self._invoker.function
        attempts = 1 + int(function.get("max_retry_attempts", 2))
        if queued_s > int(function.get("max_event_age_s", 21600)):
            self._to_destination(event, invocation_record(function, event, None, 0, "EventAgeExceeded"))
            return False
        started = time.monotonic()
        for attempt in range(1, attempts + 1):
            try:
                self._invoker.invoke(event)
            except Exception as exc:
                error = exc
                if attempt < attempts:
                    time.sleep(self._retry_delay_s * attempt)  # Lambda waits 1 min, then 2 min
                    continue
                destination = self._to_destination(event, invocation_record(function, event, error, attempts))
                self._report(
                    f"{function['logical_id']:<20} {event.get('detail-type', '?'):<22} FAILED x{attempts} "
                    f"({type(error).__name__}) -> {'on-failure queue' if destination else 'dropped'}"
                )
                return False
            ms = (time.monotonic() - started) * 1000
            self._report(f"{function['logical_id']:<20} {event.get('detail-type', '?'):<22} ok {ms:.0f} ms")
            return True
        return False  # pragma: no cover (the loop always returns)

    def _to_destination(self, event: dict[str, Any], record: dict[str, Any]) -> str | None:
        destination: str | None = self._invoker.function.get("on_failure_url")
        if destination:
            self._sqs.send_message(QueueUrl=destination, MessageBody=json.dumps(record))
        return destination


def _latency_ms(event: dict[str, Any], since: tuple[str, ...]) -> float | None:
    """From the ISO-8601 instant at the path `since` of the event (when the stack's first function
    received what became the event, say) to now; None without one."""
    value: Any = event
    for part in since:
        value = value.get(part) if isinstance(value, dict) else None
    try:
        received = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return (datetime.now(UTC) - received).total_seconds() * 1000 if since else None


class EventQueue:
    """Lambda's internal queue for asynchronous invocations of one function: events wait here and
    `concurrency` threads run them through `AsyncInvoker`. Counts, and the latency from the instant
    at the event's `latency_since` path to handler success, are kept for `GET /status`."""

    def __init__(
        self, async_invoker: AsyncInvoker, concurrency: int = 2, latency_since: tuple[str, ...] = ()
    ) -> None:
        self._async = async_invoker
        self._latency_since = latency_since
        self._queue: queue.SimpleQueue[tuple[float, dict[str, Any]]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._counts = {"queued": 0, "running": 0, "succeeded": 0, "failed": 0}
        self._latencies: list[float] = []
        for n in range(concurrency):
            threading.Thread(target=self._run, name=f"invoke-{n}", daemon=True).start()

    def put(self, event: dict[str, Any]) -> None:
        with self._lock:
            self._counts["queued"] += 1
        self._queue.put((time.monotonic(), event))

    def status(self, *, take_latencies: bool = False) -> dict[str, Any]:
        """The counts; with take_latencies, also the latencies since the last take (and forget them)."""
        with self._lock:
            out: dict[str, Any] = dict(self._counts)
            if take_latencies:
                out["latencies_ms"], self._latencies = self._latencies, []
        return out

    def _run(self) -> None:
        while True:
            queued_at, event = self._queue.get()
            with self._lock:
                self._counts["queued"] -= 1
                self._counts["running"] += 1
            ok = False
            try:
                ok = self._async.handle(event, time.monotonic() - queued_at)
            except Exception:  # the on-failure queue itself failed: say so, keep serving
                traceback.print_exc()
            latency = _latency_ms(event, self._latency_since) if ok else None
            with self._lock:
                self._counts["running"] -= 1
                self._counts["succeeded" if ok else "failed"] += 1
                if latency is not None and len(self._latencies) < 1_000_000:
                    self._latencies.append(latency)


class _LocalHandler(BaseHTTPRequestHandler):
    """What the local HTTP servers share: keep-alive, no access log, JSON replies."""

    server_version = "motostack"
    protocol_version = "HTTP/1.1"  # keep-alive, as API Gateway and Lambda's API offer
    # Headers and body are written separately: without TCP_NODELAY the body waits for the
    # client's delayed ACK (about 40 ms per request on Linux).
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        return  # never an access log: a path may hold a credential

    def _reply(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        """`headers` replace the default JSON content type."""
        self.send_response(status)
        for key, value in (headers or {"content-type": "application/json"}).items():
            self.send_header(key, value)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def serve_invoke(
    invoker: Invoker, events: EventQueue, *, report: Callable[[str], None] = print
) -> ThreadingHTTPServer:
    """Lambda's Invoke API for this function on 127.0.0.1 (a free port; see server.server_address)."""

    class Handler(_LocalHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else b""
            if not (self.path.startswith("/2015-03-31/functions/") and self.path.endswith("/invocations")):
                self._reply(404, b'{"Type":"User","message":"Not Found"}')
                return
            try:
                event = json.loads(body or b"{}")
            except ValueError:
                self._reply(400, b'{"Type":"User","message":"Could not parse request body into json"}')
                return
            kind = self.headers.get("x-amz-invocation-type", "RequestResponse")
            if kind == "Event":
                events.put(event)
                self._reply(202)
            elif kind == "DryRun":
                self._reply(204)
            else:
                try:
                    result = invoker.invoke(event)
                except Exception as exc:
                    payload = {"errorType": type(exc).__name__, "errorMessage": type(exc).__name__}
                    self._reply(
                        200,
                        json.dumps(payload).encode(),
                        {"content-type": "application/json", "x-amz-function-error": "Unhandled"},
                    )
                    report(
                        f"{invoker.function['logical_id']:<20} {'(invoke)':<22} error {type(exc).__name__}"
                    )
                    return
                self._reply(200, json.dumps(result).encode())

        def do_GET(self) -> None:
            if self.path.split("?", 1)[0] == "/status":
                take = self.path.endswith("?latencies=take")
                self._reply(200, json.dumps(events.status(take_latencies=take)).encode())
            else:
                self._reply(404, b'{"message":"Not Found"}')

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="invoke-http", daemon=True).start()
    return server


# --- the HTTP API in front of a function ---------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    """One route of an HTTP API: `POST /items/{id}` matches POST /items/42 with id=42."""

    method: str
    template: str

    @property
    def key(self) -> str:
        return f"{self.method} {self.template}"

    def match(self, method: str, path: str) -> dict[str, str] | None:
        """The path parameters if the request is this route's, else None."""
        if method != self.method:
            return None
        wanted, given = self.template.strip("/").split("/"), path.strip("/").split("/")
        if len(wanted) != len(given):
            return None
        parameters = {}
        for part, value in zip(wanted, given, strict=True):
            if part.startswith("{") and part.endswith("}") and value:
                parameters[part[1:-1]] = value
            elif part != value:
                return None
        return parameters


def http_api_event(
    method: str,
    path: str,
    route: Route,
    parameters: dict[str, str],
    headers: dict[str, str],
    body: bytes,
    source_ip: str,
) -> dict[str, Any]:
    """The HTTP API payload-format-2.0 event API Gateway would give the function for this request."""
    try:
        text, is_base64 = body.decode("utf-8"), False
    except UnicodeDecodeError:
        text, is_base64 = base64.b64encode(body).decode(), True
    now = datetime.now(UTC)
    return {
        "version": "2.0",
        "routeKey": route.key,
        "rawPath": path,
        "rawQueryString": "",
        "headers": {k.lower(): v for k, v in headers.items()},
        "requestContext": {
            "accountId": ACCOUNT,
            "apiId": "local",
            "domainName": "localhost",
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": headers.get("User-Agent", ""),
            },
            "requestId": uuid.uuid4().hex[:16],
            "routeKey": route.key,
            "stage": "$default",
            "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": int(now.timestamp() * 1000),
        },
        "pathParameters": parameters or None,
        "body": text if body else None,
        "isBase64Encoded": is_base64,
    }


def serve_http_api(
    invoker: Invoker, port: int, routes: list[Route], *, report: Callable[[str], None] = print
) -> ThreadingHTTPServer:
    """Serve the function's routes on 127.0.0.1:port (in a thread); return the server to shut it
    down. `GET /health` answers when it is up."""
    name = str(invoker.function.get("logical_id", "function"))

    class Handler(_LocalHandler):
        def _route(self, method: str) -> None:
            path = self.path.split("?", 1)[0]
            found = next(((r, p) for r in routes if (p := r.match(method, path)) is not None), None)
            if found is None:
                self._reply(404, b'{"message":"Not Found"}')
                return
            route, parameters = found
            length = int(self.headers.get("content-length") or 0)
            if length > API_GATEWAY_MAX_BODY:
                self._reply(413, b'{"message":"Request Entity Too Large"}')
                return
            body = self.rfile.read(length) if length else b""
            event = http_api_event(
                method, path, route, parameters, dict(self.headers.items()), body, self.client_address[0]
            )
            started = time.monotonic()
            try:
                response = invoker.invoke(event)
            except Exception:
                traceback.print_exc()
                self._reply(500, b'{"message":"Internal Server Error"}')
                return
            status = int(response.get("statusCode", 200))
            payload = response.get("body") or ""
            raw = base64.b64decode(payload) if response.get("isBase64Encoded") else payload.encode()
            self._reply(status, raw, {str(k): str(v) for k, v in (response.get("headers") or {}).items()})
            ms = (time.monotonic() - started) * 1000
            report(f"{name:<20} {route.key:<22} {status} {ms:.0f} ms")

        def do_POST(self) -> None:
            self._route("POST")

        def do_PUT(self) -> None:
            self._route("PUT")

        def do_GET(self) -> None:
            if self.path == "/health":
                self._reply(200, b'{"status":"ok"}')
            else:
                self._route("GET")

    class Server(ThreadingHTTPServer):
        request_queue_size = 256  # a burst of connections must queue, not be reset

    server = Server(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="http-api", daemon=True).start()
    return server
