"""Token verification: several tokens, constant-time compare, a rate-limited refresh on mismatch."""

from __future__ import annotations

import json
import threading
import time

import pytest

from ingest.auth import InvalidSecretError, TokenVerifier, bearer_token, parse_tokens
from ingest.errors import AuthUnavailableError

GOOD = "a" * 24
OTHER = "b" * 24


class Secret:
    def __init__(self, value: str) -> None:
        self.value = value
        self.reads = 0
        self.broken = False

    def __call__(self) -> str:
        self.reads += 1
        if self.broken:
            raise ConnectionError("secrets manager down")
        return self.value


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("secret", "expected"),
    [
        (json.dumps({"token": GOOD}), {GOOD}),
        (json.dumps({"token": GOOD, "next": OTHER}), {GOOD, OTHER}),
        (json.dumps({"next": OTHER}), {OTHER}),
        (json.dumps({"token": "  " + GOOD + " "}), {GOOD}),
        # Another key is not a token, whatever it holds.
        (json.dumps({"token": GOOD, "note": OTHER, "tokens": [OTHER]}), {GOOD}),
    ],
)
def test_parse_tokens(secret: str, expected: set[str]) -> None:
    assert {t.decode() for t in parse_tokens(secret)} == expected


@pytest.mark.parametrize(
    "secret",
    [
        GOOD,  # not a JSON object
        json.dumps([GOOD]),
        json.dumps({"note": GOOD}),  # no token key
        json.dumps({"token": "short"}),  # under 16 characters
        json.dumps({"token": GOOD, "next": "short"}),
        json.dumps({"token": 12345678901234567890}),
    ],
)
def test_a_secret_not_as_documented_is_refused_whole(secret: str) -> None:
    with pytest.raises(InvalidSecretError):
        parse_tokens(secret)


def test_an_invalid_secret_makes_every_request_unavailable_and_is_not_read_on_each() -> None:
    # GIVEN a working endpoint whose secret is then edited to hold a token that is too short
    secret, clock = Secret(json.dumps({"token": GOOD})), Clock()
    verifier = TokenVerifier(secret, clock=clock, spawn=lambda work: work())
    assert verifier.verify(GOOD)
    secret.value = json.dumps({"token": "short"})
    clock.now += 301  # due for refresh
    # THEN requests are refused as unavailable (503, alarmed), not served on the old token
    with pytest.raises(AuthUnavailableError):
        verifier.verify(GOOD)
    reads = secret.reads
    for _ in range(20):
        with pytest.raises(AuthUnavailableError):
            verifier.verify(GOOD)
    assert secret.reads == reads  # not a read per request
    # AND once the secret is fixed, the next look after the interval serves again
    secret.value = json.dumps({"token": GOOD})
    clock.now += 6
    assert verifier.verify(GOOD)


def test_a_lone_surrogate_is_no_token() -> None:
    verifier = TokenVerifier(Secret(json.dumps({"token": GOOD})))
    assert not verifier.verify("\udc80" * 20)
    assert verifier.verify("\udc80" * 20, GOOD)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (f"Bearer {GOOD}", GOOD),
        (f"bearer {GOOD}", GOOD),
        (f"BeArEr   {GOOD}  ", GOOD),
        (f"Basic {GOOD}", None),
        ("Bearer", None),
        ("Bearer ", None),
        (GOOD, None),
        (None, None),
        ("", None),
    ],
)
def test_bearer_token(header: str | None, expected: str | None) -> None:
    assert bearer_token(header) == expected


def test_cache_then_one_rate_limited_refresh_on_mismatch() -> None:
    secret, clock = Secret(json.dumps({"token": GOOD})), Clock()
    verifier = TokenVerifier(secret, clock=clock, max_age_s=300, min_refresh_interval_s=5)
    assert verifier.verify(GOOD)
    assert verifier.verify(GOOD)
    assert secret.reads == 1  # cached
    # A flood of wrong tokens right after a load does not reach Secrets Manager.
    for _ in range(50):
        assert not verifier.verify(OTHER)
    assert secret.reads == 1
    # After the interval, one wrong token triggers one refresh; the next ones wait again.
    clock.now += 6
    assert not verifier.verify(OTHER)
    assert not verifier.verify(OTHER)
    assert secret.reads == 2
    # A token added to the secret is accepted on first use after the interval.
    secret.value = json.dumps({"token": GOOD, "next": OTHER})
    clock.now += 6
    assert verifier.verify(OTHER)
    assert secret.reads == 3


def test_cache_expires() -> None:
    secret, clock = Secret(json.dumps({"token": GOOD})), Clock()
    verifier = TokenVerifier(secret, clock=clock, max_age_s=300)
    assert verifier.verify(GOOD)
    secret.value = json.dumps({"token": OTHER})
    clock.now += 301
    assert not verifier.verify(GOOD)
    assert verifier.verify(OTHER)


def test_outage_keeps_cached_tokens_but_a_cold_start_cannot_authenticate() -> None:
    secret, clock = Secret(json.dumps({"token": GOOD})), Clock()
    verifier = TokenVerifier(secret, clock=clock)
    assert verifier.verify(GOOD)
    secret.broken = True
    clock.now += 1000
    assert verifier.verify(GOOD)  # stale but better than refusing every webhook
    assert not verifier.verify(OTHER)
    cold = TokenVerifier(secret, clock=clock)
    with pytest.raises(AuthUnavailableError):
        cold.verify(GOOD)


def test_no_candidate_never_reads_the_secret() -> None:
    secret = Secret(json.dumps({"token": GOOD}))
    verifier = TokenVerifier(secret)
    assert not verifier.verify(None, "")
    assert secret.reads == 0


def test_any_of_several_candidates() -> None:
    verifier = TokenVerifier(Secret(json.dumps({"token": GOOD})))
    assert verifier.verify("wrong-token-xxxxxxxxxxxxx", GOOD)


def test_concurrent_requests_on_a_threaded_host_read_the_secret_once() -> None:
    loads: list[int] = []
    release = threading.Event()

    def slow_secret() -> str:
        loads.append(1)
        release.wait(5)
        return json.dumps({"token": "a" * 16})

    verifier = TokenVerifier(slow_secret)
    results: list[bool] = []
    threads = [threading.Thread(target=lambda: results.append(verifier.verify("a" * 16))) for _ in range(8)]
    for thread in threads:
        thread.start()
    time.sleep(0.1)  # every thread is waiting on the first load
    release.set()
    for thread in threads:
        thread.join()
    assert results == [True] * 8
    assert loads == [1]
