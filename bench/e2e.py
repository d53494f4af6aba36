"""End to end on the local stack (`make bench`): webhooks per second and latency from POST to
stored, at client concurrency 1, 8 and 32, with zero loss checked exactly each time.

Each level posts a fresh generated plan (tools.load: conversations shuffled, a tenth sent twice)
to a local stack started for this run on free ports, waits until nothing is in flight, and
compares every chat, message and transcript with the plan. The baseline, measured in the same
run with the same client: the same bodies POSTed to a loopback HTTP server that only parses the
JSON and answers 202 (what HTTP and the client alone cost on this machine).

Results are merged into bench/results/latest.json under "end_to_end". Loopback only, bounded.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "functions")]

CHATS = int(os.environ.get("BENCH_E2E_CHATS", "40"))
LEVELS = [int(c) for c in os.environ.get("BENCH_E2E_CONCURRENCY", "1,8,32").split(",")]

# A bare loopback server: parse the body, answer 202. Run in its own interpreter, like the stack.
BARE_SERVER = """
import json, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    def log_message(self, *a): pass
    def do_POST(self):
        json.loads(self.rfile.read(int(self.headers["content-length"])))
        body = b'{"status":"accepted"}'
        self.send_response(202); self.send_header("content-length", str(len(body))); self.end_headers()
        self.wfile.write(body)
s = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H); s.daemon_threads = True; s.serve_forever()
"""


def bare_baseline(concurrency: int, seed: int) -> dict[str, Any]:
    from motostack.launcher import free_port
    from tools.load import percentile, plan, post_all

    port = free_port()
    server = subprocess.Popen([sys.executable, "-c", BARE_SERVER, str(port)])
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        work = plan(CHATS, seed=seed)
        result = post_all(f"http://127.0.0.1:{port}/webhook", work.webhooks, concurrency)
    finally:
        server.terminate()
        server.wait()
    return {
        "per_s": round(result.sent / result.seconds, 1),
        "post_latency_ms": {
            "p50": round(percentile(result.latencies_ms, 0.5), 2),
            "p99": round(percentile(result.latencies_ms, 0.99), 2),
        },
    }


def main() -> int:
    from motostack.launcher import free_port
    from tools.load import measure
    from tools.localstack import settings_from_env, start

    state = Path(tempfile.mkdtemp(prefix="bench-e2e-"))
    os.environ["EBBOT_LOCAL_DIR"] = str(state)  # where the status calls find the stack
    settings, token = settings_from_env()
    settings.http_port, settings.aws_port, settings.verbose = free_port(), free_port(), False
    print(f"end to end on the local stack: {CHATS} chats (about {CHATS * 11} webhooks) per level")
    stack = start(settings, token)
    levels: dict[str, Any] = {}
    try:
        measure(stack.outputs, 5, 8, seed=1, timeout_s=120)  # warm up: first invocations are cold
        for n, concurrency in enumerate(LEVELS):
            seed = 1000 + n
            run = measure(stack.outputs, CHATS, concurrency, seed=seed, timeout_s=600)
            base = bare_baseline(concurrency, seed)
            run["baseline_bare_http"] = base
            run["ratio_to_bare_http"] = round(base["per_s"] / run["end_to_end_per_s"], 2)
            levels[str(concurrency)] = run
            print(
                f"  c={concurrency:<3} {run['end_to_end_per_s']:6.1f}/s end to end "
                f"(accepted {run['accepted_per_s']}/s; bare HTTP {base['per_s']}/s, ratio "
                f"{run['ratio_to_bare_http']})  POST p50/p99 {run['post_latency_ms']['p50']}/"
                f"{run['post_latency_ms']['p99']} ms  received->stored p50/p99 "
                f"{run['received_to_stored_ms']['p50']}/{run['received_to_stored_ms']['p99']} ms  "
                f"backlog max {run['backlog']['max']}  {'exact' if not run['problems'] else 'LOSS'}"
            )
    finally:
        stack.stop()
    out = ROOT / "bench" / "results" / "latest.json"
    report = json.loads(out.read_text()) if out.exists() else {}
    report["end_to_end"] = {"date": time.strftime("%Y-%m-%d"), "chats_per_level": CHATS, "levels": levels}
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written to {out.relative_to(ROOT)}")
    return 1 if any(level["problems"] for level in levels.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
