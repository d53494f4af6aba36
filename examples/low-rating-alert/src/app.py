"""Publish a short notice for a chat closed with a low rating. Reads only the event's metadata."""

from __future__ import annotations

import json
import os
from typing import Any

import boto3


def notice(event: dict[str, Any]) -> dict[str, Any]:
    """The SNS message for one event: ids and the rating, never chat content."""
    metadata = event["detail"]["metadata"]
    return {
        "Subject": f"Ebbot chat rated {metadata['rating']}",
        "Message": json.dumps(
            {
                "botId": metadata["botId"],
                "chatId": metadata["chatId"],
                "rating": metadata["rating"],
                "closedAt": metadata["occurredAt"],
            }
        ),
    }


def lambda_handler(event: dict[str, Any], context: Any, sns: Any = None) -> dict[str, Any]:
    client = sns or boto3.client("sns")
    response = client.publish(TopicArn=os.environ["TOPIC_ARN"], **notice(event))
    return {"messageId": response["MessageId"]}
