"""chat.scenario.run -> one item per run."""

from __future__ import annotations

from typing import Any

from shared.claim_check import resolve_webhook
from shared.envelope import BusDetail
from shared.models import ChatScenarioRun
from shared.observability import MetricUnit, logger, metrics
from shared.store import Store


def store_scenario_run(detail: BusDetail, store: Store, s3: Any) -> bool:
    """Store the run once: the same webhook delivered again is a no-op."""
    metadata = detail.metadata
    webhook = ChatScenarioRun.model_validate(resolve_webhook(detail, s3))
    scenario = webhook.data.scenario
    # A run is the scenario, at that instant, in that Ebbot request (or, lacking one, that body).
    identity = f"{scenario.id}|{webhook.request_id or metadata.bodySha256}"
    result = store.put_run(
        bot_id=webhook.botId,
        chat_id=webhook.chat_id,
        ns=webhook.occurred_at_ns or 0,
        identity=identity,
        scenario=scenario.model_dump(mode="json", exclude_unset=True),
    )
    if not result.written:
        metrics.add_metric(name="ScenarioRunsDuplicate", unit=MetricUnit.Count, value=1)
    logger.info("scenario run stored", chat_id=webhook.chat_id, duplicate=not result.written)
    return result.written
