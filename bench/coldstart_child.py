"""One cold start, in a fresh interpreter: import a handler, then invoke it once, AWS answered by
botocore's Stubber. Prints JSON timings. Run by bench/run.py; `baseline-*` measures boto3 alone,
`libraries-*` the baseline plus the libraries the functions are built on (no code of ours),
`--traced` runs with tracing on, `--code=DIR` takes the functions and the layer from DIR."""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

T0 = time.perf_counter()

# What each function calls on its first invocation, in order, per service. The baselines create the
# same clients: the functions make their S3 client only when an event needs S3 (shared/runtime/clients.py).
PRIVACY_SECRET = {"SecretString": json.dumps({"key": "k" * 48})}
CALLS: dict[str, dict[str, list[tuple[str, dict[str, Any]]]]] = {
    "ingest": {
        "secretsmanager": [("get_secret_value", {"SecretString": json.dumps({"token": "b" * 32})})],
        "events": [("put_events", {"FailedEntryCount": 0, "Entries": [{"EventId": "e"}]})],
    },
    # A consumer's first event: the privacy key (read once per sandbox), the chat's tombstone
    # (none), then its own writes (shared.runtime.consumer, docs/privacy.md).
    "chats": {
        "secretsmanager": [("get_secret_value", PRIVACY_SECRET)],
        "dynamodb": [("get_item", {}), ("get_item", {}), ("put_item", {})],
    },
    "messages": {
        "secretsmanager": [("get_secret_value", PRIVACY_SECRET)],
        "dynamodb": [("get_item", {}), ("update_item", {})],
    },
    "scenarios": {
        "secretsmanager": [("get_secret_value", PRIVACY_SECRET)],
        "dynamodb": [("get_item", {}), ("put_item", {})],
    },
}
EVENTS = {
    "ingest": "events/apigw/chat.user.message.json",
    "chats": "events/eventbridge/chat.create.json",
    "messages": "events/eventbridge/chat.user.message.json",
    "scenarios": "events/eventbridge/chat.scenario.run.json",
}


# The environment of every benchmark process: fake credentials, no tracing, quiet logs.
BENCH_ENV = {
    "AWS_ACCESS_KEY_ID": "x",
    "AWS_SECRET_ACCESS_KEY": "x",
    "AWS_DEFAULT_REGION": "us-east-1",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_METRICS_NAMESPACE": "bench",
    "POWERTOOLS_LOG_LEVEL": "WARNING",
    "PYDANTIC_DISABLE_PLUGINS": "__all__",  # as template.yaml's Globals set it for every function
}


def stub_boto3(calls: dict[str, list[tuple[str, dict]]]) -> None:  # type: ignore[type-arg]
    import boto3
    from botocore.stub import Stubber

    real = boto3.client
    stubs = []

    def client(name: str, *args: object, **kwargs: object) -> object:
        made = real(name, *args, region_name="us-east-1", **kwargs)
        stub = Stubber(made)
        for operation, response in calls.get(name, []):
            stub.add_response(operation, response)
        stub.activate()
        stubs.append(stub)
        return made

    boto3.client = client


# `--traced`: tracing on, as deployed with Tracing=Active. The X-Ray SDK runs in its Lambda mode and
# sends its segments over UDP to a daemon address on loopback where nothing listens.
TRACED_ENV = {
    "POWERTOOLS_TRACE_DISABLED": "false",
    "LAMBDA_TASK_ROOT": "functions",
    "_X_AMZN_TRACE_ID": "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
    "AWS_XRAY_DAEMON_ADDRESS": "127.0.0.1:2000",
    "AWS_XRAY_CONTEXT_MISSING": "IGNORE_ERROR",
}


def import_libraries(*, consumer: bool) -> None:
    """`libraries-*`: the baseline plus what every function of its kind imports from its libraries,
    and no code of ours: Powertools' logger and metrics (with tracing off, as here, no tracer:
    shared/runtime/observability.py), pydantic with one model built, and for a consumer Powertools'
    parser and its EventBridge model. The best any function built on them could do."""
    from aws_lambda_powertools import Logger, Metrics
    from aws_lambda_powertools.utilities.typing import LambdaContext  # noqa: F401
    from pydantic import BaseModel

    Logger(), Metrics(namespace="bench")

    class Model(BaseModel):
        field: str

    if consumer:
        from aws_lambda_powertools.utilities.parser import event_parser  # noqa: F401
        from aws_lambda_powertools.utilities.parser.models import EventBridgeModel  # noqa: F401


def main() -> None:
    name = sys.argv[1]
    os.environ.update(BENCH_ENV)
    if "--traced" in sys.argv[2:]:
        os.environ.update(TRACED_ENV, AWS_LAMBDA_FUNCTION_NAME=name)
    os.environ.update(
        POWERTOOLS_SERVICE_NAME=name,
        EVENT_BUS_NAME="bus",
        BUCKET_NAME="bucket",
        TOKEN_SECRET_ID="secret",
        TABLE_NAME="table",
        PRIVACY_KEY_SECRET_ID="privacy",
    )
    if name.startswith(("baseline-", "libraries-")):
        import boto3
        from botocore.stub import Stubber

        if name.startswith("libraries-"):
            import_libraries(consumer=name == "libraries-consumer")
        t_import = time.perf_counter()
        services = list(CALLS["ingest" if "-ingest" in name else "chats"])
        if name.endswith("-all"):
            services.append("s3")  # every client the function uses, S3 included (made on first use)
        clients = [boto3.client(s, region_name="us-east-1") for s in services]
        ingest = "-ingest" in name
        # The one stubbed call: the ingest's PutEvents, or a consumer's PutItem.
        target = clients[services.index("events" if ingest else "dynamodb")]
        stub = Stubber(target)
        operation = "put_events" if ingest else "put_item"
        stub.add_response(
            operation, {"FailedEntryCount": 0, "Entries": []} if operation == "put_events" else {}
        )
        with stub:
            if operation == "put_events":
                target.put_events(Entries=[{"Source": "s", "DetailType": "d", "Detail": "{}"}])
            else:
                target.put_item(TableName="t", Item={"pk": {"S": "a"}})
        done = time.perf_counter()
        print(json.dumps({"import_ms": (t_import - T0) * 1000, "first_ms": (done - t_import) * 1000}))
        return
    # `--code=DIR`: the functions and the layer from a tree laid out as sam build ships them
    # (bench/deployed.py), ahead of the venv; otherwise from the repository and the venv.
    code = next((flag.split("=", 1)[1] for flag in sys.argv[2:] if flag.startswith("--code=")), None)
    sys.path[:0] = [f"{code}/functions", f"{code}/layer", "."] if code else ["functions", "."]
    import importlib

    module = importlib.import_module(f"{name}.app")
    t_import = time.perf_counter()
    stub_boto3(CALLS[name])
    with open(EVENTS[name]) as handle:
        event = json.load(handle)
    if name == "ingest":
        event["pathParameters"]["token"] = "b" * 32

    class Context:
        function_name, memory_limit_in_mb, aws_request_id = name, 256, "r"
        invoked_function_arn = f"arn:aws:lambda:us-east-1:123456789012:function:{name}"

        def get_remaining_time_in_millis(self) -> int:
            return 15_000  # the template's Timeout

    module.lambda_handler(event, Context())
    done = time.perf_counter()
    print(json.dumps({"import_ms": (t_import - T0) * 1000, "first_ms": (done - t_import) * 1000}))


if __name__ == "__main__":
    main()
