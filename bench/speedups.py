"""What each of moto's speed patches is worth (motostack.speedups, docs/moto-upstream.md).

    python bench/speedups.py        (about 15 minutes; BENCH_SPEEDUPS_CHATS, _ROUNDS, _CONFIGURATIONS)

For each configuration: moto as it ships ("none"), every patch ("all"), and every patch but one
("all,-name", for each name), a local stack is started on free ports, warmed up, and sent the same
generated plan (tools.load: about 11 webhooks a chat, c=8), with the stored state checked exactly.
Two figures a run: webhooks per second end to end, and the milliseconds moto spends inside its
request handling per webhook (its server's own count, GET /_local/deliveries). A patch's worth is
how much more moto time, and how much less throughput, the run without it has than "all", measured
in the same rounds; the configurations take turns in each round, so a busy spell of the machine
falls on all of them.

Results are merged into bench/results/latest.json under "moto_speedups". Loopback only, bounded.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "functions")]

CHATS = int(os.environ.get("BENCH_SPEEDUPS_CHATS", "100"))
ROUNDS = int(os.environ.get("BENCH_SPEEDUPS_ROUNDS", "2"))
CONCURRENCY = 8


def moto_seconds(outputs: dict[str, Any]) -> float:
    """Seconds moto's server has spent handling requests since it started."""
    with urllib.request.urlopen(f"{outputs['AwsEndpointUrl']}/_local/deliveries", timeout=10) as answer:  # noqa: S310 (loopback)
        requests = json.loads(answer.read())["requests"]
    return float(sum(seconds for _, seconds in requests.values()))


def one_run(speedups: str, seed: int) -> dict[str, Any]:
    from motostack.launcher import free_port
    from tools.load import measure
    from tools.localstack import settings_from_env, start

    state = Path(tempfile.mkdtemp(prefix="bench-speedups-"))
    os.environ["EBBOT_LOCAL_DIR"] = str(state)  # where the status calls find the stack
    settings, token = settings_from_env()
    settings.http_port, settings.aws_port, settings.verbose = free_port(), free_port(), False
    settings.speedups = speedups
    stack = start(settings, token)
    try:
        measure(stack.outputs, 5, CONCURRENCY, seed=1, timeout_s=120)  # warm up: first invocations are cold
        before = moto_seconds(stack.outputs)
        run = measure(stack.outputs, CHATS, CONCURRENCY, seed=seed, timeout_s=900)
        moto_ms = (moto_seconds(stack.outputs) - before) * 1000 / run["webhooks"]
    finally:
        stack.stop()
    return {"per_s": run["end_to_end_per_s"], "moto_ms": round(moto_ms, 2), "exact": not run["problems"]}


def query_in_a_large_table(items: int = 5000, repeat: int = 200) -> dict[str, float]:
    """One partition's Query in a table of `items` items (a long `make run` holds that many), in
    moto in this process: milliseconds a query, stock and with `partition-queries`, in turns."""
    import timeit

    import boto3
    from moto import mock_aws

    from motostack.speedups import applied

    with mock_aws():
        ddb = boto3.client("dynamodb", region_name="us-east-1")
        keys = {"pk": "HASH", "sk": "RANGE"}
        ddb.create_table(
            TableName="t",
            KeySchema=[{"AttributeName": k, "KeyType": kind} for k, kind in keys.items()],
            AttributeDefinitions=[{"AttributeName": k, "AttributeType": "S"} for k in keys],
            BillingMode="PAY_PER_REQUEST",
        )
        for i in range(items):
            ddb.put_item(TableName="t", Item={"pk": {"S": f"chat-{i // 11}"}, "sk": {"S": f"MSG#{i:06d}"}})

        def query() -> None:
            ddb.query(
                TableName="t",
                KeyConditionExpression="pk = :p",
                ExpressionAttributeValues={":p": {"S": "chat-7"}},
            )

        best: dict[str, float] = {"stock": float("inf"), "patched": float("inf")}
        for _ in range(5):
            best["stock"] = min(best["stock"], timeit.timeit(query, number=repeat) / repeat)
            with applied("partition-queries"):
                best["patched"] = min(best["patched"], timeit.timeit(query, number=repeat) / repeat)
    return {name: round(seconds * 1000, 2) for name, seconds in best.items()}


def main() -> int:
    from motostack.speedups import NAMES

    query = query_in_a_large_table()
    print(
        f"one partition's Query in a table of 5,000 items: stock moto {query['stock']} ms, "
        f"with partition-queries {query['patched']} ms ({query['stock'] / query['patched']:.1f}x)"
    )

    chosen = os.environ.get("BENCH_SPEEDUPS_CONFIGURATIONS")  # e.g. "all;all,-jsonpath"
    configurations = chosen.split(";") if chosen else ["all", "none", *(f"all,-{name}" for name in NAMES)]
    if "all" not in configurations:
        configurations.insert(0, "all")
    runs: dict[str, list[dict[str, Any]]] = {c: [] for c in configurations}
    print(f"moto's speed patches: {len(configurations)} configurations x {ROUNDS} rounds, {CHATS} chats each")
    for round_ in range(ROUNDS):
        for configuration in configurations:
            run = one_run(configuration, seed=2000 + round_)
            runs[configuration].append(run)
            print(
                f"  round {round_ + 1}  {configuration:<28} {run['per_s']:6.1f} webhooks/s  "
                f"moto {run['moto_ms']:6.2f} ms/webhook  {'exact' if run['exact'] else 'LOSS'}",
                flush=True,
            )
    summary: dict[str, Any] = {}
    for configuration, results in runs.items():
        summary[configuration] = {
            "per_s": round(statistics.mean(r["per_s"] for r in results), 1),
            "moto_ms": round(statistics.mean(r["moto_ms"] for r in results), 2),
            "runs": results,
        }
    every = summary["all"]
    print("\nmean of the rounds; ratios to 'all' from the same rounds:")
    for configuration, s in summary.items():
        s["moto_ms_ratio_to_all"] = round(s["moto_ms"] / every["moto_ms"], 2)
        s["per_s_ratio_to_all"] = round(s["per_s"] / every["per_s"], 2)
        print(
            f"  {configuration:<28} {s['per_s']:6.1f}/s ({s['per_s_ratio_to_all']:.2f}x)  "
            f"moto {s['moto_ms']:6.2f} ms/webhook ({s['moto_ms_ratio_to_all']:.2f}x)"
        )
    out = ROOT / "bench" / "results" / "latest.json"
    report = json.loads(out.read_text()) if out.exists() else {}
    report["moto_speedups"] = {
        "date": time.strftime("%Y-%m-%d"),
        "chats": CHATS,
        "concurrency": CONCURRENCY,
        "rounds": ROUNDS,
        "configurations": summary,
        "query_ms_in_a_table_of_5000_items": query,
    }
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written to {out.relative_to(ROOT)}")
    return 1 if any(not r["exact"] for rs in runs.values() for r in rs) else 0


if __name__ == "__main__":
    sys.exit(main())
