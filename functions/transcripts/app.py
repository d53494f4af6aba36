"""Transcripts consumer Lambda (chat.close), subscribed by an EventBridge rule in template.yaml."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.runtime.consumer import CORRELATION_PATH, WebhookEvent, store
from shared.runtime.observability import logger, metrics, tracer
from transcripts.service import store_transcript


@logger.inject_lambda_context(correlation_id_path=CORRELATION_PATH, log_event=False)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
@event_parser(model=WebhookEvent)
def lambda_handler(event: WebhookEvent, context: LambdaContext) -> dict[str, Any]:
    return store_transcript(event.detail, store())
