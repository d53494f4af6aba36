"""Hostile input: whatever arrives, the ingest function answers with a documented status, never an
unhandled exception or a 5xx while AWS is up; a stranger changes nothing; the token is never stored."""

from __future__ import annotations

import base64
import gzip
import json
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from moto import mock_aws

from ingest.app import respond
from ingest.auth import TokenVerifier
from ingest.request import HttpRequest
from ingest.service import IngestService
from shared.runtime.settings import IngestSettings
from tests.aws import SECRET, TOKEN, IngestStack, create_ingest_stack
from tests.conftest import TOPICS, load_sample

DOCUMENTED = {202, 400, 401, 403, 413, 415}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    kind = draw(
        st.sampled_from(["sample", "mutated", "json", "bytes", "deep", "number", "duplicate", "text"])
    )
    if kind == "sample":
        return json.dumps(load_sample(draw(st.sampled_from(TOPICS)))).encode()
    if kind == "mutated":
        body = load_sample(draw(st.sampled_from(TOPICS)))
        key = draw(st.sampled_from(sorted(body)))
        body[key] = draw(json_values)
        return json.dumps(body).encode()
    if kind == "json":
        return json.dumps(draw(json_values)).encode()
    if kind == "bytes":
        return draw(st.binary(max_size=300))
    if kind == "deep":
        depth = draw(st.integers(min_value=50, max_value=5000))
        return ('{"topic":"x.y","botId":"b","d":' + "[" * depth + "]" * depth + "}").encode()
    if kind == "number":
        digits = draw(st.integers(min_value=15, max_value=6000))
        return ('{"topic":"x.y","botId":"b","n":' + "9" * digits + "}").encode()
    if kind == "duplicate":
        return b'{"topic":"chat.create","topic":5,"botId":"b","data":{"id":"c"},"data":{"id":"d"}}'
    return draw(st.text(max_size=200)).encode("utf-8", "surrogatepass")


@st.composite
def requests(draw: st.DrawFn) -> tuple[HttpRequest, bool]:
    raw = draw(bodies())
    encoding = draw(st.sampled_from([None, "gzip", "identity", "br", "gzip, gzip", "x-gzip", "deflate"]))
    if encoding in ("gzip", "x-gzip") and draw(st.booleans()):
        raw = gzip.compress(raw)
    as_base64 = draw(st.booleans()) or raw != raw.decode("utf-8", "ignore").encode()
    if as_base64:
        body = base64.b64encode(raw).decode() if draw(st.integers(0, 9)) else "%%%" + raw.hex()
    else:
        body = raw.decode("utf-8", "surrogatepass")
    authorised = draw(st.booleans())
    token = TOKEN if authorised else draw(st.sampled_from([None, "", "x" * 30, TOKEN + "x", TOKEN.upper()]))
    headers = {
        "content-type": draw(
            st.sampled_from(["application/json", "text/plain", "application/xml", "", "*/*"])
        ),
        **({"content-encoding": encoding} if encoding else {}),
    }
    if draw(st.booleans()):
        headers["authorization"] = draw(
            st.sampled_from(["Bearer", "Basic abc", f"bearer {token}", "Bearer  "])
        )
    return HttpRequest(body, as_base64, headers, token), authorised or f"bearer {TOKEN}" == headers.get(
        "authorization"
    )


@pytest.fixture(scope="module")
def stack() -> Iterator[IngestStack]:
    with mock_aws():
        yield create_ingest_stack()


def service(stack: IngestStack) -> IngestService:
    return IngestService(
        IngestSettings.from_env({**stack.env(), "MAX_BODY_BYTES": "200000"}),
        verifier=TokenVerifier(lambda: stack.secrets.get_secret_value(SecretId=SECRET)["SecretString"]),
        events=stack.events,
        s3=stack.s3,
    )


@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(case=requests())
def test_any_request_gets_a_documented_answer_and_strangers_change_nothing(
    stack: IngestStack, case: tuple[HttpRequest, bool]
) -> None:
    request, authorised = case
    before = stack.snapshot()
    response = respond(service(stack), request)
    assert response.status in DOCUMENTED, response.body
    if not authorised:
        assert response.status == 401
        assert stack.snapshot() == {"objects": before["objects"], "events": []}
    else:
        after = stack.snapshot()
        blob = json.dumps([o.decode("latin-1") for o in after["objects"].values()]) + json.dumps(
            after["events"]
        )
        assert TOKEN not in blob


def test_a_10_mb_body_is_413_and_nothing_is_written(stack: IngestStack) -> None:
    body = json.dumps({**load_sample("chat.close"), "padding": "x" * 10_000_000})
    before = stack.snapshot()
    response = respond(service(stack), HttpRequest(body, False, {}, TOKEN))
    assert (response.status, response.body["error"]["code"]) == (413, "body_too_large")
    assert stack.snapshot() == {"objects": before["objects"], "events": []}
