"""Generated conversations posted to the local stack over HTTP: a bounded, loopback-only load.

    python -m tools.load --chats 300 --concurrency 32        (the stack must be running: make run)

Each chat: chat.create, chat.data.update, a few messages (each by its sender topic, some also by
chat.message), a status change, and chat.close with the transcript, which holds one message whose
webhook is never sent. Delivery is shuffled and a share is sent twice. The result is checked
exactly: every chat closed, every message stored once, every transcript in S3, no 5xx.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

BOT = "ebloadtest00000000000000000000"
BASE_MS = 1_700_000_000_000


@dataclass
class Plan:
    webhooks: list[bytes]
    chats: dict[str, int]  # chat id -> messages expected (including the transcript-only one)
    unique: int


def conversation(rng: random.Random, index: int) -> tuple[str, list[dict[str, Any]], int]:
    chat = f"{BASE_MS // 1000}.{index:03d}.{rng.getrandbits(64):016x}-load"
    start = BASE_MS + index * 60_000
    out: list[dict[str, Any]] = []

    def hook(topic: str, at: int, data: dict[str, Any]) -> dict[str, Any]:
        return {
            "topic": topic,
            "botId": BOT,
            "data": data,
            "requestId": f"{chat}-{len(out)}",
            "timestamp": at,
        }

    out.append(hook("chat.create", start, {"id": chat, "status": "ongoing", "user": {"first_name": "Load"}}))
    out.append(hook("chat.data.update", start + 1, {"id": chat, "browser": "load"}))
    transcript = []
    count = rng.randint(3, 8)
    for m in range(count + 1):
        sender = rng.choice(["user", "bot", "agent", "system"])
        at = start + 1000 + m * 700 + rng.randint(0, 300)
        message = {"id": f"{chat}-m{m}", "sender": sender, "type": "text", "value": f"message {m}"}
        transcript.append({**message, "timestamp": f"{at // 1000}.{at % 1000:03d}000000"})
        if m == count:
            break  # this one only ever appears in the transcript
        stamped = {**message, "chatId": chat, "timestamp": f"{at}.000000000"}
        out.append(hook(f"chat.{sender}.message", at, stamped))
        if rng.random() < 0.3:
            out.append(hook("chat.message", at, stamped))
    out.append(hook("chat.status.change", start + 30_000, {"id": chat, "status": "handled"}))
    out.append(hook("chat.close", start + 31_000, {"id": chat, "conversation": transcript}))
    return chat, out, count + 1


def plan(chats: int, *, seed: int = 7, duplicate_share: float = 0.1) -> Plan:
    rng = random.Random(seed)  # noqa: S311 (reproducible test data, not secrets)
    webhooks: list[bytes] = []
    expected: dict[str, int] = {}
    for index in range(chats):
        chat, hooks, messages = conversation(rng, index)
        expected[chat] = messages
        webhooks.extend(json.dumps(h).encode() for h in hooks)
    unique = len(webhooks)
    webhooks.extend(rng.sample(webhooks, int(unique * duplicate_share)))
    rng.shuffle(webhooks)
    return Plan(webhooks, expected, unique)


@dataclass
class Result:
    statuses: dict[int, int] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def sent(self) -> int:
        return sum(self.statuses.values())


def post_all(
    url: str,
    webhooks: list[bytes],
    concurrency: int,
    timeout_s: float = 600,
    on_post: Callable[[], None] = lambda: None,
) -> Result:
    """POST every body with `concurrency` workers, one keep-alive connection each, calling `on_post`
    after each answer (from the workers' threads). Loopback only."""
    import http.client

    from tools.cli import CommandError

    parts = urlsplit(url)
    if parts.hostname not in ("127.0.0.1", "localhost", "::1"):
        raise CommandError(f"the load generator only targets a stack on this machine, not {parts.hostname}")
    result = Result()
    deadline = time.monotonic() + timeout_s

    def worker(chunk: list[bytes]) -> list[tuple[int, float]]:
        connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=60)
        out = []
        for body in chunk:
            if time.monotonic() > deadline:
                break
            started = time.monotonic()
            connection.request("POST", parts.path, body=body, headers={"content-type": "application/json"})
            response = connection.getresponse()
            response.read()
            out.append((response.status, (time.monotonic() - started) * 1000))
            on_post()
        connection.close()
        return out

    chunks = [webhooks[i::concurrency] for i in range(concurrency)]
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        for outcomes in pool.map(worker, chunks):
            for status, ms in outcomes:
                result.statuses[status] = result.statuses.get(status, 0) + 1
                result.latencies_ms.append(ms)
    result.seconds = time.monotonic() - started
    return result


def stored(outputs: dict[str, Any], chat_ids: set[str]) -> tuple[dict[str, dict[str, Any]], set[str]]:
    """chat id -> {status, messages, transcriptKey} for these chats, and their transcript keys."""
    from boto3.dynamodb.types import TypeDeserializer

    from tools.running import aws_client as client

    deserializer = TypeDeserializer()
    chats: dict[str, dict[str, Any]] = {}
    for page in client(outputs, "dynamodb").get_paginator("scan").paginate(TableName=outputs["TableName"]):
        for raw in page["Items"]:
            item = {k: deserializer.deserialize(v) for k, v in raw.items()}
            if item.get("botId") != BOT or item.get("chatId") not in chat_ids:
                continue
            chat = chats.setdefault(item["chatId"], {"messages": 0})
            if item["sk"] == "CHAT":
                chat["status"] = item.get("status")
                chat["transcriptKey"] = item.get("transcriptKey")
            elif item["sk"].startswith("MSG#"):
                chat["messages"] += 1
    keys: set[str] = set()
    for page in (
        client(outputs, "s3")
        .get_paginator("list_objects_v2")
        .paginate(Bucket=outputs["DataBucketName"], Prefix=f"transcripts/bot={BOT}/")
    ):
        keys.update(
            o["Key"] for o in page.get("Contents", []) if o["Key"].rsplit("/", 1)[-1][:-5] in chat_ids
        )
    return chats, keys


def check(plan_: Plan, outputs: dict[str, Any]) -> list[str]:
    """What differs from the expected end state (empty when exact)."""
    chats, keys = stored(outputs, set(plan_.chats))
    problems = []
    if set(chats) != set(plan_.chats):
        problems.append(f"chats: {len(chats)} stored, {len(plan_.chats)} expected")
    for chat, messages in plan_.chats.items():
        got = chats.get(chat, {})
        if (
            got.get("messages") != messages
            or got.get("status") != "chat_closed"
            or got.get("transcriptKey") not in keys
        ):
            problems.append(f"{chat}: {got} (expected {messages} messages, closed, transcript)")
    if len(keys) != len(plan_.chats):
        problems.append(f"transcripts: {len(keys)} stored, {len(plan_.chats)} expected")
    return problems


def wait_until_exact(plan_: Plan, outputs: dict[str, Any], timeout_s: float) -> tuple[list[str], float]:
    """Wait until nothing is on its way (cheap status calls), then compare the stored state once."""
    from tools.cli import CommandError
    from tools.running import wait_until_drained

    started = time.monotonic()
    try:
        wait_until_drained(outputs, timeout_s)
    except CommandError as exc:
        return [str(exc)], time.monotonic() - started
    drained = time.monotonic() - started
    return check(plan_, outputs), drained


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


class BacklogWatch:
    """Samples the events in flight (moto's deliveries, the functions' queues) every `every_s`."""

    def __init__(self, outputs: dict[str, Any], every_s: float = 0.5) -> None:
        import threading

        self.samples: list[int] = []
        self._outputs, self._every_s = outputs, every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> BacklogWatch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        from tools.running import in_flight, pipeline_status

        while not self._stop.wait(self._every_s):
            with contextlib.suppress(OSError):
                self.samples.append(in_flight(pipeline_status(self._outputs)))


def measure(
    outputs: dict[str, Any],
    chats: int,
    concurrency: int,
    *,
    seed: int,
    timeout_s: float,
    show_progress: bool = False,
) -> dict[str, Any]:
    """One bounded load run: POST a fresh plan, wait until drained, check exactly. The figures:
    POST rate; end-to-end rate (all webhooks from the first POST until nothing is left in flight);
    POST latency; receipt-to-stored latency (the ingest function's receipt of the webhook to the
    consumer's success, reported by the functions); the backlog sampled while posting."""
    from tools.cli import counter
    from tools.running import pipeline_status

    work = plan(chats, seed=seed)
    pipeline_status(outputs, take_latencies=True)  # forget earlier runs' latencies
    bar = counter("posting", len(work.webhooks)) if show_progress else contextlib.nullcontext(lambda: None)
    with BacklogWatch(outputs) as watch, bar as advance:
        result = post_all(outputs["WebhookUrl"], work.webhooks, concurrency, timeout_s, on_post=advance)
    problems, drained_s = wait_until_exact(work, outputs, timeout_s)
    stored_ms = [
        ms
        for function in pipeline_status(outputs, take_latencies=True)["functions"].values()
        for ms in function.get("latencies_ms", [])
    ]
    total_s = result.seconds + drained_s
    backlog = watch.samples or [0]
    third = max(1, len(backlog) // 3)
    return {
        "seed": seed,
        "concurrency": concurrency,
        "webhooks": len(work.webhooks),
        "unique": work.unique,
        "statuses": {str(k): v for k, v in sorted(result.statuses.items())},
        "post_seconds": round(result.seconds, 2),
        "accepted_per_s": round(result.sent / result.seconds, 1),
        "drain_seconds_after_last_post": round(drained_s, 2),
        "end_to_end_per_s": round(len(work.webhooks) / total_s, 1),
        "post_latency_ms": {
            "p50": round(percentile(result.latencies_ms, 0.5), 1),
            "p99": round(percentile(result.latencies_ms, 0.99), 1),
        },
        "received_to_stored_ms": {
            "p50": round(percentile(stored_ms, 0.5), 1),
            "p99": round(percentile(stored_ms, 0.99), 1),
            "count": len(stored_ms),
        },
        # In flight while posting: the first and last thirds' means (equal if the backlog does not grow).
        "backlog": {
            "max": max(backlog),
            "first_third_mean": round(sum(backlog[:third]) / third, 1),
            "last_third_mean": round(sum(backlog[-third:]) / third, 1),
        },
        "problems": problems[:20],
    }


def main(argv: list[str] | None = None) -> int:
    """Exit 0 when the stored state is exact and nothing failed, 1 otherwise (tools/cli.py)."""
    from tools import cli

    parser = argparse.ArgumentParser(
        prog="python -m tools.load",
        description=(__doc__ or "").split("\n")[0],
        epilog="example:\n  python -m tools.load --chats 250 --concurrency 8   (after: make run)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--chats", type=_positive, default=300, help="conversations to post (default 300)")
    parser.add_argument("--concurrency", type=_positive, default=32, help="parallel connections (default 32)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds to post and drain (default 600)")
    parser.add_argument("--seed", type=int, help="the plan's seed (default: a new one each run)")
    args = parser.parse_args(argv)
    return cli.run(lambda: _load(args))


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {value}")
    return value


def _load(args: argparse.Namespace) -> int:
    from tools import cli
    from tools.running import running_outputs

    outputs = running_outputs()
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)
    print(
        f"posting about {args.chats * 11} webhooks for {args.chats} chats, c={args.concurrency}, seed {seed}",
        flush=True,
    )
    r = measure(outputs, args.chats, args.concurrency, seed=seed, timeout_s=args.timeout, show_progress=True)
    print(
        f"posted {r['webhooks']} ({r['unique']} unique) in {r['post_seconds']} s "
        f"({r['accepted_per_s']}/s accepted): statuses {r['statuses']}"
    )
    print(f"POST latency p50 {r['post_latency_ms']['p50']} ms, p99 {r['post_latency_ms']['p99']} ms")
    print(
        f"received -> stored p50 {r['received_to_stored_ms']['p50']} ms, "
        f"p99 {r['received_to_stored_ms']['p99']} ms ({r['received_to_stored_ms']['count']} invocations)"
    )
    b = r["backlog"]
    print(
        f"in flight while posting: max {b['max']}, mean {b['first_third_mean']} (first third) "
        f"-> {b['last_third_mean']} (last third)"
    )
    print(
        f"drained {r['drain_seconds_after_last_post']} s after the last POST; stored state "
        f"{'exact' if not r['problems'] else 'WRONG'}"
    )
    print(f"end to end: {r['end_to_end_per_s']} webhooks/s")
    for problem in r["problems"]:
        print("  " + problem)
    failed = r["problems"] or any(int(s) >= 500 for s in r["statuses"])
    return cli.NOT_ALL_DONE if failed else cli.DONE


if __name__ == "__main__":
    sys.exit(main())
