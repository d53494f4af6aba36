"""Messages consumer Lambda, subscribed by an EventBridge rule in template.yaml. Thin on purpose."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext

from messages.service import store_message
from shared.runtime.consumer import CORRELATION_PATH, WebhookEvent, store
from shared.runtime.observability import logger, metrics, tracer


@logger.inject_lambda_context(correlation_id_path=CORRELATION_PATH, log_event=False)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
@event_parser(model=WebhookEvent)
def lambda_handler(event: WebhookEvent, context: LambdaContext) -> dict[str, Any]:
    written = store_message(event.detail, store())
    return {"deliveryId": event.detail.metadata.deliveryId, "written": written}
