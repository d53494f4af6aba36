"""Consumers per event (`make bench`): each consumer's warm handler time per event, with AWS answered
in-process by botocore's Stubber, against the baseline of json.loads + json.dumps of the same event
and one Stubber-answered PutItem of it; and the DynamoDB and S3 requests each event costs on AWS,
with DynamoDB capacity units computed from the item sizes by DynamoDB's rules.

How: each event is first run once against moto (the stack deployed from template.yaml, in this
process) with the function's clients recorded: every request, its response, and the item it read
or wrote. The timed runs replay those responses through the Stubber, so the handler does exactly
the work it did against moto, without moto's time. A second delivery of the same event is
measured too (consumers are idempotent: that is what a retry or a duplicate webhook costs). Each
chat-state and chat.close case starts from the chat item every other chat-state sample has filled
(their instants moved before the case's, so the case is news to the chat; chat.create, messages
and scenario runs: no chat yet), and the chat.close cases store every transcript message (the
worst case: none arrived before).

Results are merged into bench/results/latest.json under "consumers".
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "functions"), str(ROOT)]
ITERATIONS = int(os.environ.get("BENCH_ITERATIONS", "200"))

CASES = [
    ("chats", "ChatsFunction", "chat.create"),
    ("chats", "ChatsFunction", "chat.update"),
    ("chats", "ChatsFunction", "chat.status.change"),
    ("chats", "ChatsFunction", "chat.user.update"),
    ("chats", "ChatsFunction", "chat.data.update"),
    ("messages", "MessagesFunction", "chat.user.message"),
    ("scenarios", "ScenariosFunction", "chat.scenario.run"),
    ("transcripts", "TranscriptsFunction", "chat.close"),
    ("transcripts", "TranscriptsFunction", "chat.close 100 KB"),
]


def attribute_size(value: dict[str, Any]) -> int:
    """DynamoDB's size of one attribute value (docs: 'Item sizes and formats')."""
    (kind, v), *_ = value.items()
    if kind == "S":
        return len(v.encode())
    if kind == "N":
        digits = len(str(Decimal(v)).replace("-", "").replace(".", "").lstrip("0")) or 1
        return math.ceil(digits / 2) + 1
    if kind == "B":
        return len(v)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind in ("SS", "NS", "BS"):
        return sum(attribute_size({kind[0]: member}) for member in v)
    if kind == "L":
        return 3 + sum(1 + attribute_size(member) for member in v)
    if kind == "M":
        return 3 + sum(len(k.encode()) + 1 + attribute_size(member) for k, member in v.items())
    raise ValueError(kind)


def item_size(item: dict[str, Any]) -> int:
    return sum(len(name.encode()) + attribute_size(value) for name, value in item.items())


class Recorder:
    """Every request a client makes, with its response, in order (botocore's own events)."""

    def __init__(self, *clients: Any) -> None:
        self.calls: list[dict[str, Any]] = []
        self._clients = clients
        for client in clients:
            client.meta.events.register("provide-client-params.*.*", self._params)
            client.meta.events.register("after-call.*.*", self._response)

    def stop(self) -> None:
        for client in self._clients:
            client.meta.events.unregister("provide-client-params.*.*", self._params)
            client.meta.events.unregister("after-call.*.*", self._response)

    def _params(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        self.calls.append({"operation": model.name, "params": dict(params)})

    def _response(self, parsed: dict[str, Any], model: Any, **_: Any) -> None:
        response = {k: v for k, v in parsed.items() if k != "ResponseMetadata"}
        for call in reversed(self.calls):
            if call["operation"] == model.name and "response" not in call:
                call["response"] = response
                return


def partition(ddb: Any, table: str, event: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """Every item of the event's chat, by key (the consumers write nowhere else)."""
    chat = event["detail"]["metadata"]["chatId"]
    items = ddb.query(
        TableName=table,
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": f"CHAT#{chat}"}},
        ConsistentRead=True,
    )["Items"]
    return {(i["pk"]["S"], i["sk"]["S"]): i for i in items}


def projected(item: dict[str, Any] | None, index: dict[str, Any]) -> dict[str, Any] | None:
    """What of an item a global secondary index holds (None: the item is not in the index)."""
    keys = [k["AttributeName"] for k in index["KeySchema"]]
    if not item or any(k not in item for k in keys):
        return None
    kind = index["Projection"].get("ProjectionType", "ALL")
    if kind == "ALL":
        return item
    extra = index["Projection"].get("NonKeyAttributes", []) if kind == "INCLUDE" else []
    return {k: v for k, v in item.items() if k in {"pk", "sk", *keys, *extra}}


def index_units(before: dict[Any, Any], after: dict[Any, Any], indexes: list[dict[str, Any]]) -> int:
    """Write units the global secondary indexes add: an index entry written when an item enters the
    index or a projected attribute changes, and a delete as well when its index key changes."""

    def units_of(entry: dict[str, Any]) -> int:
        return max(1, math.ceil(item_size(entry) / 1024))

    total = 0
    for index in indexes:
        keys = [k["AttributeName"] for k in index["KeySchema"]]
        for key in set(before) | set(after):
            old, new = projected(before.get(key), index), projected(after.get(key), index)
            if old == new:
                continue
            if old is not None and (new is None or any(old[k] != new[k] for k in keys)):
                total += units_of(old)  # the old entry is deleted
            if new is not None:
                total += units_of(new)
    return total


def capacity(calls: list[dict[str, Any]], ddb: Any, table: str) -> dict[str, Any]:
    """Write and read units of the recorded DynamoDB calls (S3: request counts)."""
    out = {"ddb_writes": 0, "wcu": 0, "chat_wcu": 0, "ddb_reads": 0, "rcu": 0.0, "s3_puts": 0, "s3_gets": 0}
    for call in calls:
        op, params, response = call["operation"], call["params"], call.get("response", {})
        if op in ("PutItem", "UpdateItem", "DeleteItem"):
            key = params["Key"] if "Key" in params else {k: params["Item"][k] for k in ("pk", "sk")}
            now = ddb.get_item(TableName=table, Key=key).get("Item", {})
            before = response.get("Attributes", {})
            size = max(item_size(now), item_size(before), item_size(params.get("Item", {})))
            out["ddb_writes"] += 1
            out["wcu"] += max(1, math.ceil(size / 1024))
            if key["sk"]["S"] == "CHAT":  # of which the chat item's (the rest: messages, runs)
                out["chat_wcu"] += max(1, math.ceil(size / 1024))
        elif op in ("GetItem", "Query"):
            items = [response["Item"]] if "Item" in response else response.get("Items", [])
            if "ProjectionExpression" in params:  # billed by the whole item, not what is returned
                pk = params["Key"]["pk"] if "Key" in params else params["ExpressionAttributeValues"][":pk"]
                items = [
                    ddb.get_item(TableName=table, Key={"pk": pk, "sk": i["sk"]}).get("Item", i) for i in items
                ]
            size = sum(item_size(i) for i in items)
            units = max(1, math.ceil(size / 4096))
            out["ddb_reads"] += 1
            out["rcu"] += units if params.get("ConsistentRead") else units / 2
        elif op == "PutObject":
            out["s3_puts"] += 1
        elif op in ("GetObject", "HeadObject", "ListObjectsV2"):
            out["s3_gets"] += 1
    return out


def main() -> int:
    from bench.coldstart_child import BENCH_ENV

    os.environ.update(BENCH_ENV)
    import boto3
    from moto import mock_aws

    from motostack.deploy import Clients, deploy
    from tools.localstack import translate

    cfn = translate(parameters={"AWS::StackName": "bench"})
    results: dict[str, Any] = {}
    with mock_aws():
        deployment = deploy(Clients(), cfn=cfn)
        ddb = boto3.client("dynamodb", region_name="us-east-1")
        # The functions' logs (at the level the template sets) go where Lambda's would: not to a
        # terminal, whose speed would be measured instead. Results are printed afterwards.
        sys.stdout.flush()
        saved_stdout = os.dup(1)
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 1)
            try:
                for package, logical, topic in CASES:
                    for delivery, result in measure_case(deployment, ddb, package, logical, topic):
                        results[f"{logical} {topic} ({delivery})"] = result
            finally:
                sys.stdout.flush()
                os.dup2(saved_stdout, 1)
    out = ROOT / "bench" / "results" / "latest.json"
    report = json.loads(out.read_text()) if out.exists() else {}
    report["consumers"] = results
    out.write_text(json.dumps(report, indent=2) + "\n")
    print("consumers per event (vs json.loads + json.dumps + one Stubber PutItem), and their AWS requests:")
    for name, r in results.items():
        print(
            f"  {name:<50} {r['handler_ms']:8.3f} ms  ratio {r['ratio']:5.2f}  DynamoDB {r['ddb_writes']} "
            f"writes / {r['wcu']} WCU + {r['gsi_wcu']} index WCU, {r['ddb_reads']} reads / {r['rcu']:g} RCU;"
            f" S3 {r['s3_puts']} PUT, {r['s3_gets']} GET"
        )
    print(f"written to {out.relative_to(ROOT)}")
    return 0


def measure_case(deployment: Any, ddb: Any, package: str, logical: str, topic: str) -> Any:
    """(delivery, figures) for a first and a repeated delivery of one event to one consumer."""
    from botocore.stub import Stubber

    from bench.run import best_of, transcript_body
    from motostack.runtime import LambdaContext
    from shared.runtime import consumer

    table = deployment.outputs["TableName"]
    function = deployment.functions[logical]
    os.environ.update({k: str(v) for k, v in function.environment.items()})
    os.environ.update(TABLE_NAME=table, BUCKET_NAME=deployment.outputs["DataBucketName"])
    handler = __import__(f"{package}.app", fromlist=["lambda_handler"]).lambda_handler
    consumer.forget_clients()
    store_ddb, s3 = consumer.store()._ddb, consumer.store().bucket.s3
    event = json.loads((ROOT / "events" / "eventbridge" / f"{topic.split()[0]}.json").read_text())
    if topic.endswith("KB"):
        body = transcript_body(100 * 1024)
        event["detail"]["webhook"] = json.loads(body)
        # As ingest would describe this body (the close's version includes its hash).
        event["detail"]["metadata"] |= {"bodySize": len(body), "bodySha256": hashlib.sha256(body).hexdigest()}
    text = json.dumps(event)
    context = LambdaContext(function.name, 256, function.arn, "bench", int(time.time() * 1000) + 60_000)
    indexes = deployment.template["Resources"]["Table"]["Properties"].get("GlobalSecondaryIndexes", [])
    # Each case starts from the state it usually meets: a chat-state event or chat.close, a chat
    # item that every other chat-state sample has filled (its full size: every write rewrites it);
    # chat.create, messages and scenario runs, an empty chat.
    for key in partition(ddb, table, event):
        ddb.delete_item(TableName=table, Key={"pk": {"S": key[0]}, "sk": {"S": key[1]}})
    if package == "transcripts":  # and no transcript yet: a first delivery writes a new object
        bucket = deployment.outputs["DataBucketName"]
        listing = s3.list_object_versions(Bucket=bucket, Prefix="transcripts/")
        for version in listing.get("Versions", []) + listing.get("DeleteMarkers", []):
            s3.delete_object(Bucket=bucket, Key=version["Key"], VersionId=version["VersionId"])
    if package in ("chats", "transcripts") and topic != "chat.create":
        from chats.service import apply_chat_event
        from shared.runtime.consumer import WebhookEvent
        from shared.storage.chat_state import CHAT_STATE_TOPICS

        newest = int(event["detail"]["metadata"]["occurredAtNs"]) - 1_000_000
        for other in CHAT_STATE_TOPICS:
            if other != topic:
                sample = json.loads((ROOT / "events" / "eventbridge" / f"{other}.json").read_text())
                stamp = sample["detail"]["metadata"]
                stamp["occurredAtNs"] = str(min(int(stamp["occurredAtNs"]), newest))  # the case is newest
                apply_chat_event(WebhookEvent.model_validate(sample).detail, consumer.store())
    for delivery in ("first", "again"):
        before = partition(ddb, table, event)
        recorder = Recorder(store_ddb, s3)
        handler(event, context)  # against moto, recorded
        recorder.stop()
        units = capacity(recorder.calls, ddb, table)
        units["gsi_wcu"] = index_units(before, partition(ddb, table, event), indexes)
        stubs = {"ddb": Stubber(store_ddb), "s3": Stubber(s3)}

        def invoke() -> None:
            for call in recorder.calls:  # noqa: B023 (used within this iteration only)
                _replay(stubs["s3" if "Object" in call["operation"] else "ddb"], call)  # noqa: B023
            handler(event, context)

        def baseline() -> None:
            stubs["ddb"].add_response("put_item", {})  # noqa: B023
            document = json.loads(text)
            store_ddb.put_item(
                TableName=table, Item={"pk": {"S": "p"}, "sk": {"S": "s"}, "doc": {"S": json.dumps(document)}}
            )

        for stub in stubs.values():
            stub.activate()
        try:
            iterations = max(10, ITERATIONS * 2000 // max(len(text), 2000))
            timings = best_of({"handler": invoke, "baseline": baseline}, iterations)
            handler_ms, baseline_ms = timings["handler"], timings["baseline"]
        finally:
            for stub in stubs.values():
                stub.deactivate()
        yield (
            delivery,
            {
                "bytes": len(text),
                "handler_ms": round(handler_ms, 3),
                "baseline_ms": round(baseline_ms, 3),
                "ratio": round(handler_ms / baseline_ms, 2),
                **units,
            },
        )


def _replay(stub: Any, call: dict[str, Any]) -> None:
    """Queue the recorded answer: a response, or the error moto gave (a failed condition, say)."""
    method, response = _snake(call["operation"]), call.get("response", {})
    if "Error" not in response:
        stub.add_response(method, response)
        return
    modeled = {k: v for k, v in response.items() if k not in ("Error", "ResponseMetadata")}
    stub.add_client_error(
        method,
        service_error_code=response["Error"]["Code"],
        service_message=response["Error"].get("Message", ""),
        http_status_code=400,
        modeled_fields=modeled or None,
    )


def _snake(operation: str) -> str:
    from botocore import xform_name

    return str(xform_name(operation))


if __name__ == "__main__":
    sys.exit(main())
