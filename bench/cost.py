"""Dollars per million webhooks on AWS for a stated mix: a model, with every assumption named.

    python bench/cost.py        (make bench runs it after the timings)

Inputs: the template's memory and architecture (arm64), the write and read units measured by
bench/consumers.py (docs/data-model.md's counts where a topic was not measured), the ingest handler's
and the consumers' measured time per event (bench/results/latest.json, when present),
and the prices in bench/prices-2026-11-27.json. AWS-side latency that a local run cannot measure
(PutEvents, DynamoDB and S3 round trips) is an assumption stated below. The floor is what any design
pays per webhook: an HTTP API request, one EventBridge event and one DynamoDB write.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PRICES = json.loads((ROOT / "bench" / "prices-2026-11-27.json").read_text())

# The mix: share of webhooks per topic (a chat of ~20 webhooks, one close at 100 KB).
MIX = {
    "chat.create": 0.05,
    "chat.update": 0.20,
    "chat.status.change": 0.05,
    "chat.user.update": 0.03,
    "chat.data.update": 0.07,
    "message": 0.50,
    "chat.scenario.run": 0.05,
    "chat.close": 0.05,
}
# chat.close: how many of its transcript's messages never arrived as message webhooks (each costs
# the close one write).
MISSING_AT_CLOSE = 5
# DynamoDB write units per webhook, index included, where bench/consumers.py has not measured them
# (docs/data-model.md): chat.close is the missing messages, the chat item (2-3 KB) and its index entry.
WCU = {
    "chat.create": 2,
    "chat.update": 3,
    "chat.status.change": 3,
    "chat.user.update": 2,
    "chat.data.update": 2,
    "message": 1,
    "chat.scenario.run": 1,
    "chat.close": MISSING_AT_CLOSE + 4,
}
# DynamoDB read units per webhook where bench/consumers.py has not measured them: chat-state
# topics read the chat item (strongly consistent); chat.close reads its chat item and the keys of
# its messages (eventually consistent, billed by whole items: ~550 message items of ~380 bytes).
RCU = {
    "chat.create": 1,
    "chat.update": 1,
    "chat.status.change": 1,
    "chat.user.update": 1,
    "chat.data.update": 1,
    "message": 0,
    "chat.scenario.run": 0,
    "chat.close": 27,
}
EVENT_KB = {"chat.close": 100}  # everything else: a few KB, one 64 KB chunk
MEMORY_GB = {"ingest": 0.25, "consumer": 0.25, "transcripts": 0.5}
# Assumed AWS round trips (not measurable here): PutEvents 15 ms, a DynamoDB call 6 ms, S3 15 ms
# (a close: 8 DynamoDB calls and its one conditional PUT).
AWS_MS = {"ingest": 15, "chat": 12, "message": 6, "run": 6, "close": 6 * 8 + 15}
CONSUMER_CPU_MS = 3.0  # parse + merge per event, when bench/consumers.py has not measured it
# Measured consumer cases (bench/consumers.py, first delivery) that stand for each topic of the mix.
CONSUMER_CASES = {
    "chat.create": "ChatsFunction chat.create (first)",
    "chat.update": "ChatsFunction chat.update (first)",
    "chat.status.change": "ChatsFunction chat.status.change (first)",
    "chat.user.update": "ChatsFunction chat.user.update (first)",
    "chat.data.update": "ChatsFunction chat.data.update (first)",
    "message": "MessagesFunction chat.user.message (first)",
    "chat.scenario.run": "ScenariosFunction chat.scenario.run (first)",
    # A close whose messages all arrived before it (the common case); its missing writes are added.
    "chat.close": "TranscriptsFunction chat.close 100 KB (again)",
}
# Where the close's own writes are measured: the first delivery writes the chat item and its index
# entry (and every message, which the model replaces with MISSING_AT_CLOSE).
CLOSE_WRITES_CASE = "TranscriptsFunction chat.close 100 KB (first)"
PLATFORM_LOG_BYTES = 350  # Lambda's START, END and REPORT lines (JSON), at PlatformLogLevel INFO
APP_LOG_BYTES = 350  # our one INFO line per invocation, at LogLevel INFO
# Metric lines (embedded metric format) are written only off the happy path (refusals, spills,
# duplicates: shared/runtime/observability.py), so none in this mix, at any LogLevel.
XRAY_SAMPLED = 0.05  # X-Ray's default sampling at volume
# ArchiveRetentionDays 0 keeps events forever; the model counts a year of storage then.
FOREVER_MONTHS = 12


def template_defaults() -> dict[str, Any]:
    """The template's own defaults for what the model depends on: it follows the template."""
    from tools.template import load_template

    parameters = load_template()["Parameters"]
    return {
        name: parameters[name]["Default"]
        for name in ("LogLevel", "PlatformLogLevel", "Tracing", "Archive", "ArchiveRetentionDays")
    }


# Configurations that pull the template's cost levers (a product decision each: fewer logs, no
# traces, a week of replay or none), for comparison.
LEAN = {
    "LogLevel": "WARNING",
    "PlatformLogLevel": "WARN",
    "Tracing": "Disabled",
    "Archive": "Enabled",
    "ArchiveRetentionDays": 7,
}
LEAN_NO_ARCHIVE = {**LEAN, "Archive": "Disabled"}


def ingest_ms(log_level: str = "INFO") -> dict[str, float]:
    """The ingest handler's measured time per topic, at the configuration's LogLevel (bench/run.py
    measures INFO and WARNING)."""
    latest = ROOT / "bench" / "results" / "latest.json"
    measured = json.loads(latest.read_text())["warm_ingest"] if latest.exists() else {}
    field = "handler_ms" if log_level in ("DEBUG", "INFO") else "handler_warning_ms"

    def get(name: str, default: float) -> float:
        case = measured.get(name, {})
        return float(case.get(field, case.get("handler_ms", default)))

    message = get("chat.user.message", 0.6)
    return {t: get(t if t != "message" else "chat.user.message", message) for t in MIX} | {
        "chat.close": get("chat.close 97 KB", get("chat.close 100 KB", 10.0))
    }


def consumer_figures() -> dict[str, dict[str, float]]:
    """Per topic: consumer CPU ms (measured when bench/consumers.py ran), DynamoDB write units
    (measured base + index units; chat.close's missing messages are the model's), read units, and
    for chat.close the S3 PUTs and GETs/HEADs of its first delivery (one conditional PUT when not
    measured)."""
    latest = ROOT / "bench" / "results" / "latest.json"
    measured = json.loads(latest.read_text()).get("consumers", {}) if latest.exists() else {}
    close = measured.get(CLOSE_WRITES_CASE, {})
    out = {}
    for topic in MIX:
        case = measured.get(CONSUMER_CASES[topic], {})
        wcu = WCU[topic]
        if topic == "chat.close" and "chat_wcu" in close:
            wcu = MISSING_AT_CLOSE + close["chat_wcu"] + close["gsi_wcu"]
        elif case and topic != "chat.close":
            wcu = case["wcu"] + case.get("gsi_wcu", 0)
        rcu = float(case["rcu"]) if case else RCU[topic]
        out[topic] = {"cpu_ms": float(case.get("handler_ms", CONSUMER_CPU_MS)), "wcu": wcu, "rcu": rcu}
    out["chat.close"] |= {"s3_puts": close.get("s3_puts", 1), "s3_gets": close.get("s3_gets", 0)}
    return out


def per_million(front_door: str = "http_api", config: dict[str, Any] | None = None) -> dict[str, float]:
    p = PRICES
    config = config or template_defaults()
    cpu = ingest_ms(config["LogLevel"])
    lines: dict[str, float] = {}
    lines["API requests"] = p[f"{front_door}_per_million"]
    ingest_seconds = sum(MIX[t] * (cpu[t] + AWS_MS["ingest"]) for t in MIX) / 1000
    consumers = consumer_figures()
    consumer_seconds = (
        sum(
            MIX[t]
            * (
                consumers[t]["cpu_ms"]
                + AWS_MS["close" if t == "chat.close" else "message" if t == "message" else "chat"]
            )
            for t in MIX
        )
        / 1000
    )
    consumer_gb = sum(
        MIX[t] * (MEMORY_GB["transcripts"] if t == "chat.close" else MEMORY_GB["consumer"]) for t in MIX
    )
    lines["Lambda requests (ingest + 1 consumer)"] = 2 * p["lambda_requests_per_million"]
    lines["Lambda duration (arm64)"] = (
        1e6
        * p["lambda_arm64_gb_second"]
        * (ingest_seconds * MEMORY_GB["ingest"] + consumer_seconds * consumer_gb)
    )
    chunks = sum(MIX[t] * max(1, -(-EVENT_KB.get(t, 3) // 64)) for t in MIX)
    lines["EventBridge events"] = chunks * p["eventbridge_per_million_64kb"]
    gb = sum(MIX[t] * EVENT_KB.get(t, 3) for t in MIX) * 1e6 / 1024 / 1024
    days = int(config["ArchiveRetentionDays"])
    months = days / 30 if days else FOREVER_MONTHS
    archived = config["Archive"] == "Enabled"
    lines["EventBridge archive"] = (
        gb * (p["archive_per_gb_processed"] + months * p["archive_per_gb_month"]) if archived else 0.0
    )
    lines["DynamoDB writes"] = sum(MIX[t] * consumers[t]["wcu"] for t in MIX) * p["dynamodb_wcu_per_million"]
    lines["DynamoDB reads"] = sum(MIX[t] * consumers[t]["rcu"] for t in MIX) * p["dynamodb_rcu_per_million"]
    closes = MIX["chat.close"] * 1e6
    close = consumers["chat.close"]
    lines["S3 transcripts"] = (
        closes
        * (close["s3_puts"] * p["s3_put_per_thousand"] + close["s3_gets"] * p["s3_get_per_thousand"])
        / 1000
    )
    log_bytes = (PLATFORM_LOG_BYTES if config["PlatformLogLevel"] in ("DEBUG", "INFO") else 0) + (
        APP_LOG_BYTES if config["LogLevel"] in ("DEBUG", "INFO") else 0
    )
    lines["CloudWatch Logs"] = 2 * log_bytes * 1e6 / 1024**3 * p["logs_ingest_per_gb"]
    traced = config["Tracing"] == "Active"
    lines["X-Ray traces"] = XRAY_SAMPLED * p["xray_traces_per_million"] if traced else 0.0
    lines["Secrets Manager (per month, not per webhook)"] = 0.0
    return lines


def main() -> int:
    floor = (
        PRICES["http_api_per_million"]
        + PRICES["eventbridge_per_million_64kb"]
        + PRICES["dynamodb_wcu_per_million"]
    )
    defaults = template_defaults()
    print("Dollars per million webhooks (mix: 50% messages, 20% chat.update, 5% chat.close at 100 KB, ...)")
    results: dict[str, Any] = {"floor": round(floor, 3)}
    for label, config, doors in (
        ("template defaults", defaults, ("http_api", "function_url", "rest_api")),
        ("lean", LEAN, ("http_api",)),
        ("lean, no archive", LEAN_NO_ARCHIVE, ("http_api",)),
    ):
        settings = ", ".join(f"{k}={v}" for k, v in config.items())
        for door in doors:
            lines = per_million(door, config)
            total = sum(lines.values())
            results[f"{label} / {door}"] = {
                "config": config,
                "total": round(total, 2),
                "ratio_to_floor": round(total / floor, 2),
                "lines": {k: round(v, 3) for k, v in lines.items()},
            }
            print(
                f"\n{label} ({settings}), front door {door}: total ${total:.2f}"
                f"   ({total / floor:.2f} x the floor of ${floor:.3f})"
            )
            for name, dollars in sorted(lines.items(), key=lambda kv: -kv[1]):
                print(f"  {name:<45} ${dollars:7.3f}")
    monthly = {
        "the token and privacy-key secrets": 2 * PRICES["secrets_per_month"],
        "the stack's KMS key": PRICES["kms_key_per_month"],
        "the dashboard (beyond the account's free three)": PRICES["dashboard_per_month"],
        "the two metric filters' metrics": 2 * PRICES["custom_metric_per_month"],
    }
    results["per_month_whatever_the_volume"] = {k: round(v, 2) for k, v in monthly.items()}
    print(f"\nplus ${sum(monthly.values()):.2f} a month whatever the volume:")
    for name, dollars in monthly.items():
        print(f"  {name:<68} ${dollars:5.2f}")
    latest = ROOT / "bench" / "results" / "latest.json"
    if latest.exists():
        report = json.loads(latest.read_text())
        report["cost_per_million"] = results
        latest.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
