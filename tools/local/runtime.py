"""Run one function of the template the way Lambda would, against the local stack.

- `Invoker` imports the handler named in the template and calls it with a Lambda-like context.
- `AsyncInvoker` adds what EventBridge's asynchronous invocation means: a handler that raises is
  retried as the function's EventInvokeConfig says (at most 2), then Lambda's invocation record
  goes to the on-failure destination queue. Events older than the rule target's maximum age, or
  that could not be delivered (a worker died while holding them), go to the rule's DLQ with the
  attributes EventBridge sets.
- `poll_queue` feeds a consumer from the SQS queue that stands in for its rule target.
- `serve_ingest` is the HTTP API in front of the ingest function: POST /webhook and /webhook/{token}.
"""

from __future__ import annotations

import base64
import importlib
import json
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
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
    function: dict[str, Any], event: dict[str, Any], error: BaseException, attempts: int
) -> dict[str, Any]:
    """Lambda's on-failure destination record for an asynchronous invocation that ran out of retries."""
    return {
        "version": "1.0",
        "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "requestContext": {
            "requestId": str(uuid.uuid4()),
            "functionArn": f"{function['arn']}:$LATEST",
            "condition": "RetriesExhausted",
            "approximateInvokeCount": attempts,
        },
        "requestPayload": event,
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
        # Only the error's type: its message could quote chat content.
        "responsePayload": {"errorType": type(error).__name__, "errorMessage": type(error).__name__},
    }


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

    def handle(self, event: dict[str, Any]) -> bool:
        """True if the handler succeeded; False if the event went to the on-failure destination."""
        function = self._invoker.function
        attempts = 1 + int(function.get("max_retry_attempts", 2))
        started = time.monotonic()
        for attempt in range(1, attempts + 1):
            try:
                self._invoker.invoke(event)
            except Exception as exc:
                error = exc
                if attempt < attempts:
                    time.sleep(self._retry_delay_s * attempt)  # Lambda waits 1 min, then 2 min
                    continue
                record = invocation_record(function, event, error, attempts)
                destination = function.get("on_failure_url")
                if destination:
                    self._sqs.send_message(QueueUrl=destination, MessageBody=json.dumps(record))
                self._report(
                    f"{function['logical_id']:<20} {event.get('detail-type', '?'):<22} FAILED x{attempts} "
                    f"({type(error).__name__}) -> {'on-failure queue' if destination else 'dropped'}"
                )
                return False
            ms = (time.monotonic() - started) * 1000
            self._report(f"{function['logical_id']:<20} {event.get('detail-type', '?'):<22} ok {ms:.0f} ms")
            return True
        return False  # pragma: no cover (the loop always returns)


def poll_queue(
    sqs: Any,
    queue: dict[str, Any],
    async_invoker: AsyncInvoker,
    stop: threading.Event,
    *,
    max_receives: int = 3,
) -> None:
    """Receive the rule target's events and invoke the function for each, until `stop` is set."""
    url = queue["url"]
    idle_s = 0.0
    while not stop.is_set():
        try:
            # Short polls: a long poll would hold moto's request lock (tools.local.moto_server).
            batch = sqs.receive_message(
                QueueUrl=url,
                MaxNumberOfMessages=10,
                WaitTimeSeconds=0,
                AttributeNames=["ApproximateReceiveCount", "SentTimestamp"],
            )
        except Exception:
            if stop.is_set():
                return
            time.sleep(0.5)
            continue
        if not batch.get("Messages"):
            # Back off while idle (moto spends CPU on every poll), but stay quick to pick up work.
            idle_s = min(0.5, idle_s * 2 or 0.02)
            stop.wait(idle_s)
            continue
        idle_s = 0.0
        handled: list[dict[str, str]] = []
        for message in batch.get("Messages", []):
            event = json.loads(message["Body"])
            event.setdefault("account", ACCOUNT)  # moto leaves it out; AWS always sends it
            attributes = message.get("Attributes", {})
            age_s = time.time() - int(attributes.get("SentTimestamp", time.time() * 1000)) / 1000
            receives = int(attributes.get("ApproximateReceiveCount", 1))
            if receives > max_receives or age_s > queue.get("max_event_age_s", 86400):
                _dead_letter(
                    sqs, queue, event, "DELIVERY_FAILED" if receives > max_receives else "EVENT_TOO_OLD"
                )
            else:
                async_invoker.handle(event)
            handled.append({"Id": str(len(handled)), "ReceiptHandle": message["ReceiptHandle"]})
        # Deleted once handled (or dead-lettered), in one request for the batch.
        sqs.delete_message_batch(QueueUrl=url, Entries=handled)


def _dead_letter(sqs: Any, queue: dict[str, Any], event: dict[str, Any], code: str) -> None:
    """What EventBridge does when it cannot deliver to a target: the raw event, with its reasons."""
    if not queue.get("dlq_url"):
        return
    sqs.send_message(
        QueueUrl=queue["dlq_url"],
        MessageBody=json.dumps(event),
        MessageAttributes={
            "RULE_ARN": {"DataType": "String", "StringValue": queue["rule_arn"]},
            "TARGET_ARN": {"DataType": "String", "StringValue": queue["function_arn"]},
            "ERROR_CODE": {"DataType": "String", "StringValue": code},
            "ERROR_MESSAGE": {
                "DataType": "String",
                "StringValue": "the local stack could not deliver the event",
            },
        },
    )


# --- the HTTP API in front of the ingest function ------------------------------------------------------


def http_api_event(
    method: str, path: str, headers: dict[str, str], body: bytes, source_ip: str
) -> dict[str, Any]:
    """The HTTP API payload-format-2.0 event API Gateway would give the function for this request."""
    token = path[len("/webhook/") :] if path.startswith("/webhook/") else None
    route = "POST /webhook/{token}" if token else "POST /webhook"
    try:
        text, is_base64 = body.decode("utf-8"), False
    except UnicodeDecodeError:
        text, is_base64 = base64.b64encode(body).decode(), True
    now = datetime.now(UTC)
    return {
        "version": "2.0",
        "routeKey": route,
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
            "routeKey": route,
            "stage": "$default",
            "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": int(now.timestamp() * 1000),
        },
        "pathParameters": {"token": token} if token else None,
        "body": text if body else None,
        "isBase64Encoded": is_base64,
    }


def serve_ingest(
    invoker: Invoker, port: int, *, report: Callable[[str], None] = print
) -> ThreadingHTTPServer:
    """Serve the ingest routes on 127.0.0.1:port (in a thread); return the server to shut it down."""

    class Handler(BaseHTTPRequestHandler):
        server_version = "ebbot-webhooks-local"
        protocol_version = "HTTP/1.1"  # keep-alive, as API Gateway offers

        def log_message(self, format: str, *args: Any) -> None:
            return  # the access log below never shows the path (it may hold the token)

        def _reply(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            for key, value in (headers or {"content-type": "application/json"}).items():
                self.send_header(key, value)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            path = self.path.split("?", 1)[0]
            if path != "/webhook" and not (
                path.startswith("/webhook/") and "/" not in path[len("/webhook/") :]
            ):
                self._reply(404, b'{"message":"Not Found"}')
                return
            length = int(self.headers.get("content-length") or 0)
            if length > API_GATEWAY_MAX_BODY:
                self._reply(413, b'{"message":"Request Entity Too Large"}')
                return
            body = self.rfile.read(length) if length else b""
            event = http_api_event("POST", path, dict(self.headers.items()), body, self.client_address[0])
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
            report(f"{'IngestFunction':<20} {event['routeKey']:<22} {status} {ms:.0f} ms")

        def do_GET(self) -> None:
            if self.path == "/health":
                self._reply(200, b'{"status":"ok"}')
            else:
                self._reply(HTTPStatus.METHOD_NOT_ALLOWED, b'{"message":"Method Not Allowed"}')

    class Server(ThreadingHTTPServer):
        request_queue_size = 256  # a burst of connections must queue, not be reset

    server = Server(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="ingest-http", daemon=True).start()
    return server
