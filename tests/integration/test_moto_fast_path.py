"""The local stack's moto server answers JSON-protocol requests without Flask around moto's own
dispatch (tools/local/moto_server.py, item 10). What a client gets must not change: the same SDK
calls, sent as real HTTP requests to the fast path and to moto's Flask apps, give the same results
and the same errors; requests the fast path does not take (S3's REST API) still work."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError
from moto.moto_server import werkzeug_app
from werkzeug.test import Client

from motostack.moto_server import JsonProtocolFastPath, _backend_apps_without_debug

ENDPOINT = "http://127.0.0.1:4566"
ACCOUNT = "123456789012"


class _Body(io.BytesIO):
    """What botocore reads a response from: streamed (parsed bodies) or read (S3 objects)."""

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self.getvalue()


def _client(app: Callable[..., Any], service: str, region: str = "eu-north-1") -> Any:
    """A boto3 client whose signed HTTP requests are served by `app` (a WSGI app), in process."""
    client = boto3.client(service, region_name=region, endpoint_url=ENDPOINT)
    wsgi = Client(app)

    def send(request: Any, **_: Any) -> AWSResponse:
        url = urlsplit(request.url)
        body = request.body
        if hasattr(body, "read"):
            body = body.read()
        response = wsgi.open(
            path=url.path or "/",
            query_string=url.query,
            method=request.method,
            headers=[(k, v.decode() if isinstance(v, bytes) else v) for k, v in request.headers.items()],
            data=body or b"",
        )
        return AWSResponse(request.url, response.status_code, dict(response.headers), _Body(response.data))

    client.meta.events.register("before-send", send)
    return client


# Each app gets its own region (moto's state is shared in process), so names can be the same.
REGIONS = {"flask": "eu-west-1", "fast": "eu-north-1"}


@pytest.fixture(scope="module")
def apps() -> dict[str, Any]:
    _backend_apps_without_debug()
    flask = werkzeug_app.DomainDispatcherApplication(werkzeug_app.create_backend_app)
    return {"flask": flask, "fast": JsonProtocolFastPath(flask)}


def _outcome(call: Callable[[], dict[str, Any]]) -> tuple[str, Any]:
    try:
        response = call()
    except ClientError as exc:
        return "error", (exc.response["Error"]["Code"], exc.response["ResponseMetadata"]["HTTPStatusCode"])
    response.pop("ResponseMetadata", None)
    for volatile in ("EventId",):  # generated per call
        for entry in response.get("Entries", []):
            entry.pop(volatile, None)
    return "ok", json.loads(json.dumps(response, default=str, sort_keys=True))


def _dynamodb_story(ddb: Any, table: str) -> list[tuple[str, Any]]:
    key = {"pk": {"S": "chat#1"}}
    return [
        _outcome(
            lambda: (
                ddb.create_table(
                    TableName=table,
                    KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                    AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                    BillingMode="PAY_PER_REQUEST",
                )["TableDescription"]["KeySchema"]
                and {"created": True}
            )
        ),
        _outcome(lambda: ddb.put_item(TableName=table, Item={**key, "n": {"N": "1"}, "b": {"B": b"\x00"}})),
        _outcome(
            lambda: ddb.update_item(
                TableName=table,
                Key=key,
                UpdateExpression="SET #v = if_not_exists(#v, :v) ADD #s :s",
                ExpressionAttributeNames={"#v": "value", "#s": "sources"},
                ExpressionAttributeValues={":v": {"S": "hello"}, ":s": {"SS": ["chat.message"]}},
                ReturnValues="ALL_OLD",
            )
        ),
        _outcome(lambda: ddb.get_item(TableName=table, Key=key, ConsistentRead=True)),
        _outcome(
            lambda: ddb.put_item(TableName=table, Item=key, ConditionExpression="attribute_not_exists(pk)")
        ),
        _outcome(lambda: ddb.get_item(TableName=f"{table}-missing", Key=key)),
        _outcome(lambda: ddb.update_item(TableName=table, Key=key, UpdateExpression="SET")),
    ]


def test_dynamodb_answers_the_same_through_the_fast_path(apps: dict[str, Any]) -> None:
    results = {
        name: _dynamodb_story(_client(app, "dynamodb", REGIONS[name]), "fast-path")
        for name, app in apps.items()
    }
    assert results["fast"] == results["flask"]
    kinds = [kind for kind, _ in results["fast"]]
    assert kinds == ["ok", "ok", "ok", "ok", "error", "error", "error"]
    assert results["fast"][3][1]["Item"]["sources"] == {"SS": ["chat.message"]}
    assert results["fast"][4][1] == ("ConditionalCheckFailedException", 400)
    assert results["fast"][5][1] == ("ResourceNotFoundException", 400)
    # The JSON-protocol request did take the fast path: its backend app's view was looked up once.
    assert any(view is not None for view in apps["fast"]._views.values())


def _events_and_queue_story(events: Any, sqs: Any) -> list[tuple[str, Any]]:
    bus = "fast-path-bus"
    queue_url = sqs.create_queue(QueueName="fast-path")["QueueUrl"]
    entry = {"Source": "s", "DetailType": "d", "Detail": '{"a":1}', "EventBusName": bus}
    return [
        _outcome(lambda: {"arn": events.create_event_bus(Name=bus)["EventBusArn"].split("/")[-1]}),
        _outcome(lambda: events.put_events(Entries=[entry])),
        _outcome(lambda: events.describe_event_bus(Name=f"{bus}-missing")),
        _outcome(lambda: sqs.send_message(QueueUrl=queue_url, MessageBody="x") and {"sent": 1}),
        _outcome(lambda: {"n": len(sqs.receive_message(QueueUrl=queue_url)["Messages"])}),
    ]


def test_eventbridge_and_sqs_answer_the_same_through_the_fast_path(apps: dict[str, Any]) -> None:
    results = {
        name: _events_and_queue_story(
            _client(app, "events", REGIONS[name]), _client(app, "sqs", REGIONS[name])
        )
        for name, app in apps.items()
    }
    assert results["fast"] == results["flask"]
    assert results["fast"][1][1]["FailedEntryCount"] == 0
    assert results["fast"][2] == ("error", ("ResourceNotFoundException", 400))
    assert results["fast"][4] == ("ok", {"n": 1})


def test_requests_the_fast_path_does_not_take_still_reach_moto(apps: dict[str, Any]) -> None:
    s3 = _client(apps["fast"], "s3")
    s3.create_bucket(
        Bucket="fast-path-bucket", CreateBucketConfiguration={"LocationConstraint": "eu-north-1"}
    )
    s3.put_object(Bucket="fast-path-bucket", Key="a/b.json", Body=b'{"x":1}')
    assert s3.get_object(Bucket="fast-path-bucket", Key="a/b.json")["Body"].read() == b'{"x":1}'
    with pytest.raises(ClientError) as missing:
        s3.head_object(Bucket="fast-path-bucket", Key="nope")
    assert missing.value.response["Error"]["Code"] == "404"
