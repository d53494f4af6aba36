"""Benchmarks anyone can run (`make bench`), each a ratio to a baseline measured in the same run.

1. Cold start: a function's import plus first invocation in a fresh interpreter (AWS answered by
   botocore's Stubber), median of RUNS, against importing boto3, creating the same clients and one
   Stubber-answered call: the clients its cold path makes, and (`_all_clients`) every client it
   uses, S3 included, which the functions make on first use. With tracing off and on, from the
   repository and the venv; and with the code laid out as `sam build` ships it (no bytecode:
   Lambda compiles every module at every cold start) and as `make sam-build` ships it (bytecode
   added, tools.precompile), bench/deployed.py. And the baseline plus the libraries the functions
   are built on (Powertools, pydantic) with no code of ours: the share of the allowance they take.
2. Warm ingest: the ingest Lambda handler's time per event (Powertools' wrapper included), at
   LogLevel INFO (the default: one log line per webhook) and WARNING, for each sample and for
   chat.close transcripts of 10 KB, 100 KB and 1 MB, against json.loads + json.dumps + one
   Stubber-answered put_events of the same body, from a client with boto3's defaults. At WARNING,
   also where the time goes: the handler's own PutEvents call alone, and the service without
   Powertools' decorators and the API Gateway mapping.
3. Peak memory of one ingest of a 4 MB chat.close body (tracemalloc), against json.loads +
   json.dumps of the same body.

bench/consumers.py (consumers per event, with their DynamoDB and S3 requests), bench/cost.py
(dollars per million webhooks) and bench/e2e.py (the local stack end to end) complete `make bench`.
Results go to bench/results/latest.json. No timing is asserted anywhere: these are measurements.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RUNS = int(os.environ.get("BENCH_RUNS", "5"))
CLAIM_CHECK_THRESHOLD_BYTES = 983_040  # template.yaml's MaxValue
WARM_ITERATIONS = int(os.environ.get("BENCH_ITERATIONS", "200"))
KINDS = ("ingest", "consumer")  # the cold-start baselines


def cold_child(name: str, *flags: str) -> dict[str, float]:
    """One fresh interpreter: import, then the first invocation (bench/coldstart_child.py)."""
    out = subprocess.run(
        [sys.executable, "bench/coldstart_child.py", name, *flags],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    result: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return result


def cold(runs: list[tuple[str, tuple[str, ...]]]) -> dict[tuple[str, tuple[str, ...]], dict[str, float]]:
    """Medians of RUNS fresh interpreters for each (name, flags). The runs take turns, baselines
    included, so a busy spell of the machine falls on all of them rather than on one."""
    samples: dict[tuple[str, tuple[str, ...]], list[dict[str, float]]] = {run: [] for run in runs}
    for _ in range(RUNS):
        for name, flags in runs:
            samples[(name, flags)].append(cold_child(name, *flags))
    return {
        run: {
            "import_ms": statistics.median(s["import_ms"] for s in taken),
            "first_ms": statistics.median(s["first_ms"] for s in taken),
            "total_ms": statistics.median(s["import_ms"] + s["first_ms"] for s in taken),
        }
        for run, taken in samples.items()
    }


def best_of(fns: dict[str, Any], iterations: int, rounds: int = 5) -> dict[str, float]:
    """Milliseconds per call for each function: the best of `rounds` runs of `iterations` calls
    (the least disturbed), the functions taking turns so that a busy spell of the machine falls on
    all of them rather than on one."""
    runs: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            started = time.perf_counter()
            for _ in range(iterations):
                fn()
            runs[name].append((time.perf_counter() - started) / iterations * 1000)
    return {name: min(times) for name, times in runs.items()}


def transcript_body(size: int) -> bytes:
    body = json.loads((ROOT / "events" / "webhooks" / "chat.close.json").read_text())
    template = body["data"]["conversation"][3]
    body["data"]["conversation"] = messages = []
    i = 0
    # As many messages as fit in `size` bytes; the size is kept as they are added (each adds its
    # JSON and, after the first, a ", " separator).
    total = len(json.dumps(body))
    while True:
        message = {**template, "id": f"m-{i:06d}", "value": "lorem ipsum dolor sit amet " * 3}
        grown = total + len(json.dumps(message)) + (2 if i else 0)
        if grown > size:
            return json.dumps(body).encode()
        messages.append(message)
        total, i = grown, i + 1


def _ingest() -> tuple[Any, Any, Any]:
    """The ingest service as the handler builds it, with clients the Stubber can answer."""
    sys.path[:0] = [str(ROOT / "functions"), str(ROOT)]
    from bench.coldstart_child import BENCH_ENV

    os.environ.update(BENCH_ENV)
    import boto3

    from ingest.app import EVENTS_CONFIG
    from ingest.auth import TokenVerifier
    from ingest.service import IngestService
    from shared.runtime.settings import IngestSettings

    events = boto3.client("events", region_name="us-east-1", config=EVENTS_CONFIG)  # as the handler's
    s3 = boto3.client("s3", region_name="us-east-1")
    service = IngestService(
        IngestSettings.from_env(
            {
                "EVENT_BUS_NAME": "b",
                "BUCKET_NAME": "b",
                "TOKEN_SECRET_ID": "s",
                # The highest the template allows: the 1000 KB case still goes by claim check, as
                # it would on AWS (EventBridge takes 1 MB at most).
                "CLAIM_CHECK_THRESHOLD_BYTES": str(CLAIM_CHECK_THRESHOLD_BYTES),
            }
        ),
        verifier=TokenVerifier(lambda: json.dumps({"token": "t" * 32})),
        events=events,
        s3=s3,
    )
    return service, events, s3


def peak_memory(size: int = 4 * 1024 * 1024) -> dict[str, Any]:
    """Peak Python memory of one ingest of a chat.close body of `size` bytes (claim-checked to S3,
    both calls Stubber-answered), against json.loads + json.dumps of the same body."""
    import tracemalloc

    from botocore.stub import Stubber

    service, events, s3 = _ingest()  # first: it sets the environment the modules read at import
    from ingest.app import respond
    from ingest.request import HttpRequest

    raw = transcript_body(size)
    text = raw.decode()

    def handler() -> None:
        s3_stub.add_response("put_object", {})
        events_stub.add_response("put_events", {"FailedEntryCount": 0, "Entries": [{"EventId": "e"}]})
        response = respond(service, HttpRequest(text, False, {}, "t" * 32))
        assert response.status == 202, response.body

    def baseline() -> None:
        json.dumps(json.loads(raw))

    peaks = {}
    with Stubber(events) as events_stub, Stubber(s3) as s3_stub:
        for label, fn in (("handler", handler), ("baseline", baseline)):
            fn()  # warm: imports and caches are not the body's cost
            tracemalloc.start()
            fn()
            peaks[label] = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
    return {
        "bytes": len(raw),
        "handler_peak_mb": round(peaks["handler"] / 2**20, 1),
        "baseline_peak_mb": round(peaks["baseline"] / 2**20, 1),
        "handler_peak_per_body_byte": round(peaks["handler"] / len(raw), 1),
        "ratio": round(peaks["handler"] / peaks["baseline"], 2),
    }


def warm() -> dict[str, Any]:
    """The ingest Lambda handler per event (Powertools' logger context, metrics flush and the API
    Gateway mapping included), at LogLevel INFO (the template's default) and WARNING, its output
    going where Lambda's would (not a terminal)."""
    import boto3
    from botocore.stub import Stubber

    service, events, s3 = _ingest()  # first: it sets the environment the modules read at import
    from ingest import app
    from shared.runtime.observability import logger
    from tests.lambda_context import FakeLambdaContext

    app.service = lambda: service  # type: ignore[assignment]  # the Stubber-answered clients
    context = FakeLambdaContext()
    api_event = json.loads((ROOT / "events" / "apigw" / "chat.user.message.json").read_text())
    api_event["pathParameters"] = {}
    api_event["headers"] = {**api_event["headers"], "authorization": "Bearer " + "t" * 32}

    # The baseline is what the plainest code pays: a client with boto3's defaults. (The handler's
    # own client skips botocore's client-side parameter check; see ingest/app.py.)
    plain = boto3.client("events", region_name="us-east-1")

    ok = {"FailedEntryCount": 0, "Entries": [{"EventId": "e"}]}
    bodies = {p.stem: p.read_bytes() for p in sorted((ROOT / "events" / "webhooks").glob("*.json"))}
    bodies.update(
        {f"chat.close {n // 1024} KB": transcript_body(n) for n in (10 * 1024, 100 * 1024, 1000 * 1024)}
    )
    results: dict[str, dict[str, float]] = {}
    stub, plain_stub, s3_stub = Stubber(events), Stubber(plain), Stubber(s3)
    stub.activate()
    plain_stub.activate()
    s3_stub.activate()
    sys.stdout.flush()
    saved_stdout = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)  # log lines and metrics (EMF) go to stdout, as in Lambda
    try:
        for name, raw in bodies.items():
            text = raw.decode()
            event = {**api_event, "body": text, "isBase64Encoded": False}
            iterations = max(5, WARM_ITERATIONS * 2000 // max(len(raw), 2000))

            def handler(
                event: dict[str, Any] = event, claim_checked: bool = len(raw) > CLAIM_CHECK_THRESHOLD_BYTES
            ) -> None:
                if claim_checked:
                    s3_stub.add_response("put_object", {})
                stub.add_response("put_events", ok)
                response = app.lambda_handler(event, context)
                assert response["statusCode"] == 202, response["body"]

            def baseline(raw: bytes = raw) -> None:
                plain_stub.add_response("put_events", ok)
                document = json.loads(raw)
                plain.put_events(Entries=[{"Source": "s", "DetailType": "d", "Detail": json.dumps(document)}])

            # Where the time goes (at WARNING): the service alone, without Powertools' decorators
            # and the API Gateway mapping; and the PutEvents call of the entry it builds, alone.
            request = app.to_request(event)
            sent: list[dict[str, Any]] = []

            def capture(params: dict[str, Any], sent: list[dict[str, Any]] = sent, **_: Any) -> None:
                sent.append(params)

            events.meta.events.register("provide-client-params.events.PutEvents", capture)
            handler(event)
            events.meta.events.unregister("provide-client-params.events.PutEvents", capture)
            parts: dict[str, Any] = {}

            def service_only(
                request: Any = request, claim_checked: bool = len(raw) > CLAIM_CHECK_THRESHOLD_BYTES
            ) -> None:
                if claim_checked:
                    s3_stub.add_response("put_object", {})
                stub.add_response("put_events", ok)
                assert service.handle(request).outcome == "accepted"

            def put_events_only(params: dict[str, Any] = sent[-1]) -> None:
                stub.add_response("put_events", ok)
                events.put_events(**params)

            results[name] = {"bytes": len(raw)}
            # At the template's default LogLevel (INFO: the handler's one line per webhook) and at
            # LogLevel=WARNING (none).
            for level, suffix in (("INFO", ""), ("WARNING", "_warning")):
                logger.setLevel(level)
                if level == "WARNING":
                    parts = {"service": service_only, "put_events": put_events_only}
                for fn in (handler, baseline, *parts.values()):
                    fn()  # warm
                timings = best_of({"handler": handler, "baseline": baseline, **parts}, iterations)
                results[name] |= {
                    f"handler{suffix}_ms": round(timings["handler"], 3),
                    f"baseline{suffix}_ms": round(timings["baseline"], 3),
                    f"ratio{suffix}": round(timings["handler"] / timings["baseline"], 2),
                }
            results[name] |= {
                "service_warning_ms": round(timings["service"], 3),
                "ratio_service_warning": round(timings["service"] / timings["baseline"], 2),
                "put_events_ms": round(timings["put_events"], 3),
                "ratio_put_events": round(timings["put_events"] / timings["baseline"], 2),
            }
    finally:
        sys.stdout.flush()
        os.dup2(saved_stdout, 1)
        os.close(devnull)
    return results


def main() -> int:
    from bench.deployed import build_tree
    from tools.precompile import precompile

    report: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"),
        "runs": RUNS,
        "warm_ingest": {},
    }
    # Tracing off (the template's Tracing=Disabled) and on (Tracing=Active, the default), with the
    # code from the repository and the venv (whose libraries have bytecode); and tracing off with
    # the code laid out as `sam build` ships it (no bytecode) and as `make sam-build` does (with).
    functions = ("ingest", "chats", "messages", "scenarios")
    with tempfile.TemporaryDirectory(prefix="bench-deployed-") as tmp:
        sam_build = build_tree(Path(tmp) / "sam-build")
        make_sam_build = build_tree(Path(tmp) / "make-sam-build")
        precompile(make_sam_build)
        sections: tuple[tuple[str, tuple[str, ...]], ...] = (
            ("cold_start", ()),
            ("cold_start_traced", ("--traced",)),
            ("cold_start_sam_build", (f"--code={sam_build}",)),
            ("cold_start_make_sam_build", (f"--code={make_sam_build}",)),
        )
        no_flags: tuple[str, ...] = ()
        baseline_names = [f"baseline-{kind}{all_}" for kind in KINDS for all_ in ("", "-all")]
        baseline_names += [f"libraries-{kind}" for kind in KINDS]
        measured_all = cold(
            [(name, no_flags) for name in baseline_names]
            + [(name, flags) for _, flags in sections for name in functions]
        )
    # The baseline makes the clients the function's cold path makes (S3 is made on first use:
    # shared/runtime/clients.py); the `_all` one every client the function uses, S3 included, as the
    # baseline did before S3 became lazy.
    baselines = {kind: measured_all[(f"baseline-{kind}", no_flags)] for kind in KINDS}
    baselines_all = {kind: measured_all[(f"baseline-{kind}-all", no_flags)] for kind in KINDS}
    # The same baseline with the libraries every function of the kind imports and no code of ours
    # (bench/coldstart_child.py): how much of the allowance over the baseline they take alone.
    report["cold_start_libraries"] = {
        kind: {
            "total_ms": round(measured_all[(f"libraries-{kind}", no_flags)]["total_ms"], 1),
            "baseline_ms": round(baselines[kind]["total_ms"], 1),
            "ratio": round(
                measured_all[(f"libraries-{kind}", no_flags)]["total_ms"] / baselines[kind]["total_ms"], 2
            ),
        }
        for kind in KINDS
    }
    for section, flags in sections:
        report[section] = {}
        for name in functions:
            measured = measured_all[(name, flags)]
            kind = "ingest" if name == "ingest" else "consumer"
            base, base_all = baselines[kind]["total_ms"], baselines_all[kind]["total_ms"]
            report[section][name] = {
                **{k: round(v, 1) for k, v in measured.items()},
                "baseline_ms": round(base, 1),
                "ratio": round(measured["total_ms"] / base, 2),
                "baseline_all_clients_ms": round(base_all, 1),
                "ratio_all_clients": round(measured["total_ms"] / base_all, 2),
            }
    report["warm_ingest"] = warm()
    report["peak_memory_4mb"] = peak_memory()
    out = ROOT / "bench" / "results" / "latest.json"
    # The other benchmarks' sections stay (bench/speedups.py runs only by hand: make bench-moto).
    kept = json.loads(out.read_text()) if out.exists() else {}
    out.write_text(json.dumps({**kept, **report}, indent=2) + "\n")
    for section, label in (
        ("cold_start", "tracing off"),
        ("cold_start_traced", "tracing on"),
        ("cold_start_sam_build", "tracing off, code as `sam build` ships it: no bytecode"),
        ("cold_start_make_sam_build", "tracing off, code as `make sam-build` ships it: bytecode"),
    ):
        print(
            f"cold start, {label} (median of {RUNS}, import + first invocation, "
            "vs boto3 + clients + one call):"
        )
        for name, r in report[section].items():
            print(
                f"  {name:<10} {r['import_ms']:7.0f} + {r['first_ms']:5.0f} ms = {r['total_ms']:7.0f} ms   "
                f"baseline {r['baseline_ms']:6.0f} ms   ratio {r['ratio']:.2f}   "
                f"(with every client: {r['baseline_all_clients_ms']:4.0f} ms, {r['ratio_all_clients']:.2f})"
            )
    print("cold start, the baseline plus the libraries alone (Powertools, pydantic; no code of ours):")
    for kind, r in report["cold_start_libraries"].items():
        print(
            f"  {kind:<10} {r['total_ms']:7.0f} ms   baseline {r['baseline_ms']:6.0f} ms"
            f"   ratio {r['ratio']:.2f}"
        )
    print("warm ingest per event, Lambda handler (vs json.loads + json.dumps + one Stubber put_events):")
    for name, r in report["warm_ingest"].items():
        print(
            f"  {name:<22} {r['bytes']:>8} B  {r['handler_ms']:8.3f} ms  "
            f"baseline {r['baseline_ms']:8.3f} ms  ratio {r['ratio']:.2f}  "
            f"(LogLevel=WARNING: {r['handler_warning_ms']:8.3f} ms, ratio {r['ratio_warning']:.2f})"
        )
    print(
        "warm ingest at LogLevel=WARNING, where the time goes (ratios to the same baseline): "
        "its PutEvents call alone / the service alone / the Lambda handler"
    )
    for name, r in report["warm_ingest"].items():
        print(
            f"  {name:<22} {r['put_events_ms']:8.3f} / {r['service_warning_ms']:8.3f} / "
            f"{r['handler_warning_ms']:8.3f} ms   ratios {r['ratio_put_events']:.2f} / "
            f"{r['ratio_service_warning']:.2f} / {r['ratio_warning']:.2f}"
        )
    m = report["peak_memory_4mb"]
    print(
        f"peak memory, one {m['bytes']} B chat.close: {m['handler_peak_mb']} MB "
        f"({m['handler_peak_per_body_byte']} B per body byte); json round trip {m['baseline_peak_mb']} MB; "
        f"ratio {m['ratio']}"
    )
    print(f"written to {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
