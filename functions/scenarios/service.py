"""chat.scenario.run -> one item per run."""

from __future__ import annotations

from shared.contract.envelope import BusDetail
from shared.contract.models import ChatScenarioRun
from shared.runtime.consumer import dropped_as_erased, webhook_of
from shared.runtime.observability import MetricUnit, logger, metrics
from shared.storage.store import Store


def store_scenario_run(detail: BusDetail, store: Store) -> bool:
    """Store the run once: the same webhook delivered again is a no-op."""
    metadata = detail.metadata
    if dropped_as_erased(detail, store):
        return False
    webhook = webhook_of(detail, store)
    if not isinstance(webhook, ChatScenarioRun):
        logger.warning("not a scenario run", topic=metadata.topic, delivery_id=metadata.deliveryId)
        return False
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
