"""moto with motostack's speed patches (motostack/speedups.py, opt-in: the local stack's server
applies them, the test suite runs on moto as it ships) answers as stock moto does: the same calls
give the same answers both ways, and DynamoDB's behaviour holds where the patches reach."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from motostack import speedups

NESTED = {
    "M": {
        "list": {"L": [{"S": "a"}, {"N": "1"}, {"M": {"deep": {"BOOL": True}}}, {"NULL": True}]},
        "set": {"SS": ["x", "y"]},
        "bytes": {"B": b"\x00\x01"},
        "numbers": {"NS": ["1", "2.5"]},
    }
}


def make_table() -> Any:
    client = boto3.client("dynamodb", region_name="us-east-1")
    client.create_table(
        TableName="t",
        KeySchema=[
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
            {"AttributeName": "g", "AttributeType": "S"},
        ],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "gsi1",
                "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    for chat in ("a", "b", "c"):
        for n in (3, 1, 2, 10):
            client.put_item(
                TableName="t",
                Item={"pk": {"S": chat}, "sk": {"S": f"MSG#{n:02d}"}, "g": {"S": f"G{n % 2}"}},
            )
    return client


@pytest.fixture
def ddb() -> Iterator[Any]:
    with speedups.applied(), mock_aws():
        yield make_table()


def _sks(response: dict[str, Any]) -> list[str]:
    return [item["sk"]["S"] for item in response["Items"]]


def test_a_partition_query_returns_that_partition_in_key_order(ddb: Any) -> None:
    def query(**extra: Any) -> Any:
        return ddb.query(
            TableName="t",
            KeyConditionExpression="pk = :pk AND begins_with(sk, :m)",
            ExpressionAttributeValues={":pk": {"S": "b"}, ":m": {"S": "MSG#"}},
            **extra,
        )

    assert _sks(query()) == ["MSG#01", "MSG#02", "MSG#03", "MSG#10"]
    assert _sks(query(ScanIndexForward=False)) == ["MSG#10", "MSG#03", "MSG#02", "MSG#01"]
    first = query(Limit=3)
    assert _sks(first) == ["MSG#01", "MSG#02", "MSG#03"]
    assert _sks(query(ExclusiveStartKey=first["LastEvaluatedKey"])) == ["MSG#10"]
    assert query(ProjectionExpression="sk")["Items"][0] == {"sk": {"S": "MSG#01"}}
    none = ddb.query(
        TableName="t", KeyConditionExpression="pk = :pk", ExpressionAttributeValues={":pk": {"S": "zzz"}}
    )
    assert none["Items"] == []


def test_index_queries_still_span_partitions(ddb: Any) -> None:
    response = ddb.query(
        TableName="t",
        IndexName="gsi1",
        KeyConditionExpression="g = :g",
        ExpressionAttributeValues={":g": {"S": "G1"}},
    )
    assert sorted((i["pk"]["S"], i["sk"]["S"]) for i in response["Items"]) == [
        (chat, sk) for chat in ("a", "b", "c") for sk in ("MSG#01", "MSG#03")
    ]


def test_a_new_item_update_that_fails_validation_leaves_nothing(ddb: Any) -> None:
    key = {"pk": {"S": "new"}, "sk": {"S": "x"}}
    for expression, values in 2 * (  # twice: the second time, the expressions are memoised
        ("SET v = missing + :one", {":one": {"N": "1"}}),  # refers to an attribute that is not there
        ("SET v = :one ADD v :one", {":one": {"N": "1"}}),  # two paths overlap
        ("SET pk = :one", {":one": {"S": "1"}}),  # a key attribute
        ("SET v = :one SET w = :one", {":one": {"N": "1"}}),  # two SET clauses
        ("SET v = :one ADD w :one ADD x :one", {":one": {"N": "1"}}),  # two ADD clauses
    ):
        with pytest.raises(ClientError) as error:
            ddb.update_item(
                TableName="t", Key=key, UpdateExpression=expression, ExpressionAttributeValues=values
            )
        assert error.value.response["Error"]["Code"] == "ValidationException"
        assert "Item" not in ddb.get_item(TableName="t", Key=key)


def test_updates_create_merge_and_return_old_values(ddb: Any) -> None:
    key = {"pk": {"S": "new"}, "sk": {"S": "y"}}

    def write(value: str, source: str) -> Any:
        return ddb.update_item(
            TableName="t",
            Key=key,
            UpdateExpression="SET v = if_not_exists(v, :v), doc = if_not_exists(doc, :doc) ADD src :src",
            ExpressionAttributeValues={":v": {"S": value}, ":doc": NESTED, ":src": {"SS": [source]}},
            ReturnValues="ALL_OLD",
        )

    assert "Attributes" not in write("first", "a")  # created
    old = write("second", "b")["Attributes"]
    assert old["v"] == {"S": "first"}
    assert old["doc"] == NESTED  # nested maps, lists, sets and bytes come back whole
    item = ddb.get_item(TableName="t", Key=key)["Item"]
    assert item["v"] == {"S": "first"}
    assert sorted(item["src"]["SS"]) == ["a", "b"]
    assert item["doc"] == NESTED


def test_the_same_expression_text_with_different_values_is_not_confused(ddb: Any) -> None:
    for n in range(3):
        ddb.update_item(
            TableName="t",
            Key={"pk": {"S": "same"}, "sk": {"S": str(n)}},
            UpdateExpression="SET v = :v",
            ExpressionAttributeValues={":v": {"N": str(n * 10)}},
        )
    values = [
        ddb.get_item(TableName="t", Key={"pk": {"S": "same"}, "sk": {"S": str(n)}})["Item"]["v"]["N"]
        for n in range(3)
    ]
    assert values == ["0", "10", "20"]


def test_updates_stay_right_after_the_expression_memo_fills(ddb: Any) -> None:
    key = {"pk": {"S": "memo"}, "sk": {"S": "x"}}
    first = "SET v0 = if_not_exists(v0, :v) ADD n :one"
    for n in range(1100):  # more distinct expressions than the memo holds
        expression = first if n % 500 == 0 else f"SET v{n} = if_not_exists(v{n}, :v) ADD n :one"
        ddb.update_item(
            TableName="t",
            Key=key,
            UpdateExpression=expression,
            ExpressionAttributeValues={":v": {"S": f"value {n}"}, ":one": {"N": "1"}},
        )
    item = ddb.get_item(TableName="t", Key=key)["Item"]
    assert item["n"] == {"N": "1100"}
    assert item["v0"] == {"S": "value 0"}  # kept by if_not_exists on the two later uses
    assert item["v1099"] == {"S": "value 1099"}
    assert len(item) == 2 + 1 + 1100 - 2  # key, n, one v<n> per distinct expression


# --- the same calls, stock and patched ----------------------------------------------------------------


def _without_metadata(response: Any) -> Any:
    return {k: v for k, v in response.items() if k != "ResponseMetadata"}


def _scenario() -> list[Any]:
    """Calls every patch reaches, and their answers: DynamoDB writes, updates (new items, merges,
    failures), queries of a partition and of an index; EventBridge delivering to SQS through an
    input transformer (JSONPath); SQS receives."""
    answers: list[Any] = []
    ddb = make_table()
    key = {"pk": {"S": "b"}, "sk": {"S": "MSG#02"}}
    values = {":v": {"S": "x"}, ":doc": NESTED, ":src": {"SS": ["s"]}}
    # In turn: each update sees what the one before wrote.
    for expression in (
        "SET v = if_not_exists(v, :v), doc = :doc ADD src :src",
        "SET v = :v, d2 = :doc ADD src :src",
    ):
        update = ddb.update_item(
            TableName="t",
            Key=key,
            UpdateExpression=expression,
            ExpressionAttributeValues=values,
            ReturnValues="ALL_OLD",
        )
        answers += [_without_metadata(update)]
    try:
        ddb.update_item(
            TableName="t",
            Key={"pk": {"S": "n"}, "sk": {"S": "n"}},
            UpdateExpression="SET pk = :v",
            ExpressionAttributeValues={":v": {"S": "1"}},
        )
    except ClientError as exc:
        answers.append(exc.response["Error"])
    answers.append(ddb.get_item(TableName="t", Key={"pk": {"S": "n"}, "sk": {"S": "n"}}).get("Item"))
    for extra in ({}, {"ScanIndexForward": False}, {"Limit": 2}):
        answers.append(
            _without_metadata(
                ddb.query(
                    TableName="t",
                    KeyConditionExpression="pk = :p",
                    ExpressionAttributeValues={":p": {"S": "b"}},
                    **extra,
                )
            )
        )
    answers.append(
        sorted(
            str(i)
            for i in ddb.query(
                TableName="t",
                IndexName="gsi1",
                KeyConditionExpression="g = :g",
                ExpressionAttributeValues={":g": {"S": "G1"}},
            )["Items"]
        )
    )
    events, sqs = (
        boto3.client("events", region_name="us-east-1"),
        boto3.client("sqs", region_name="us-east-1"),
    )
    url = sqs.create_queue(QueueName="q", Attributes={"MessageRetentionPeriod": "600"})["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name="r", EventPattern='{"source": ["s"]}')
    events.put_targets(
        Rule="r",
        Targets=[
            {
                "Id": "t",
                "Arn": arn,
                "InputTransformer": {
                    "InputPathsMap": {"c": "$.detail.chat"},
                    "InputTemplate": '{"chat": "<c>"}',
                },
            }
        ],
    )
    for n in range(3):
        events.put_events(
            Entries=[{"Source": "s", "DetailType": "d", "Detail": json.dumps({"chat": f"c{n}"})}]
        )
    received = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    answers.append(sorted(m["Body"] for m in received))
    return answers


def test_patched_moto_answers_as_stock_moto_does() -> None:
    with mock_aws():
        stock = _scenario()
    with speedups.applied() as chosen, mock_aws():
        patched = _scenario()
    assert set(chosen) == set(speedups.NAMES)
    assert patched == stock
    assert stock[-1] == ['{"chat": "c0"}', '{"chat": "c1"}', '{"chat": "c2"}']


def test_the_patches_come_off_again() -> None:
    import jsonpath_ng.ext
    from moto.dynamodb.models.table import Table

    query, parse = Table.query, jsonpath_ng.ext.parse
    with speedups.applied():
        assert Table.query is not query
        assert jsonpath_ng.ext.parse is not parse
    assert (Table.query, jsonpath_ng.ext.parse) == (query, parse)
    with pytest.raises(ValueError, match="no speed patch"):
        speedups.choose("all,-nonsense,fast")
