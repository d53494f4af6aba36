"""The request as the service reads it, and from its body to a JSON object, refusing precisely
what AWS would refuse later.

Each refusal is a typed error (ingest.errors) with a stable code. Messages name field paths and
positions, never the values: the body is personal data.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ingest.errors import BodyTooLargeError, UnsupportedEncodingError
from shared.contract.errors import FieldProblem, WebhookInvalidError, format_path

# Ebbot's payloads are at most a handful of levels deep; anything past this is hostile.
MAX_DEPTH = 64
# EventBridge rejects integers beyond int64; DynamoDB numbers are bounded at 1e126 and 1e-130.
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
FLOAT_MAX, FLOAT_MIN_NONZERO = 9.9999999999999999e125, 1e-130
UTF8_BOM = b"\xef\xbb\xbf"
GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """What the service needs from the HTTP API event. Header names are lower-case."""

    body: str | None
    is_base64: bool
    headers: Mapping[str, str]
    path_token: str | None
    request_id: str | None = None


class _OutOfRange:
    """Stands in for a number that EventBridge or DynamoDB would refuse, until the walk names its path."""

    __slots__ = ()


_OUT_OF_RANGE = _OutOfRange()


def decode_body(body: str | None, *, is_base64: bool, content_encoding: str | None, max_bytes: int) -> bytes:
    """The body's bytes after transfer encodings (base64 from API Gateway, gzip from the sender)."""
    if not body:
        raise WebhookInvalidError("empty_body", "the request has no body")
    if is_base64:
        if len(body) > (max_bytes + 2) // 3 * 4 + 4:
            raise _too_large(max_bytes)
        try:
            raw = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise WebhookInvalidError(
                "invalid_base64", "the body is marked base64 but is not valid base64"
            ) from None
    else:
        if len(body) > max_bytes:
            raise _too_large(max_bytes)
        try:
            raw = body.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise WebhookInvalidError(
                "invalid_utf8", f"the body is not valid UTF-8 (at character {exc.start})"
            ) from None
    if len(raw) > max_bytes:
        raise _too_large(max_bytes)
    return _decompress(raw, content_encoding, max_bytes)


def _too_large(max_bytes: int) -> BodyTooLargeError:
    return BodyTooLargeError("body_too_large", f"the body is larger than {max_bytes} bytes")


def _decompress(raw: bytes, content_encoding: str | None, max_bytes: int) -> bytes:
    encodings = [e.strip().lower() for e in (content_encoding or "").split(",") if e.strip()]
    encodings = [e for e in encodings if e != "identity"]
    if not encodings:
        return raw
    if encodings not in (["gzip"], ["x-gzip"]):
        raise UnsupportedEncodingError(
            "unsupported_content_encoding", "only gzip content encoding is supported (or none)"
        )
    # A gzip stream may hold several members, one after another (RFC 1952): every one is read, and
    # anything after the last that is not a member is refused, never silently dropped.
    parts: list[bytes] = []
    total = 0
    rest = raw
    while True:
        inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        try:
            part = inflater.decompress(rest, max_bytes + 1 - total)
        except zlib.error:
            raise WebhookInvalidError(
                "invalid_gzip", "the body is marked gzip but is not valid gzip"
            ) from None
        parts.append(part)
        total += len(part)
        if total > max_bytes or inflater.unconsumed_tail:
            raise BodyTooLargeError(
                "body_too_large", f"the decompressed body is larger than {max_bytes} bytes"
            )
        if not inflater.eof:
            raise WebhookInvalidError("invalid_gzip", "the gzip body is truncated")
        rest = inflater.unused_data
        if not rest:
            return parts[0] if len(parts) == 1 else b"".join(parts)
        if not rest.startswith(GZIP_MAGIC):
            raise WebhookInvalidError(
                "invalid_gzip", f"the gzip body has {len(rest)} bytes after its end that are not gzip"
            )


def _parse_int(text: str) -> int | _OutOfRange:
    # Checked before int(): Python refuses more than 4300 digits with a ValueError of its own.
    if len(text) > 20:
        return _OUT_OF_RANGE
    value = int(text)
    return value if INT64_MIN <= value <= INT64_MAX else _OUT_OF_RANGE


def _parse_float(text: str) -> float | _OutOfRange:
    if len(text) > 400:
        return _OUT_OF_RANGE
    value = float(text)
    if not math.isfinite(value) or abs(value) > FLOAT_MAX or (value != 0 and abs(value) < FLOAT_MIN_NONZERO):
        return _OUT_OF_RANGE
    return value


def _parse_constant(_: str) -> _OutOfRange:
    return _OUT_OF_RANGE  # NaN, Infinity, -Infinity: not JSON, and refused by EventBridge


def parse_json(raw: bytes) -> Any:
    """The JSON document in `raw` (UTF-8, optional BOM), within EventBridge's and DynamoDB's limits."""
    try:
        text = raw.decode("utf-8-sig") if raw.startswith(UTF8_BOM) else raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise WebhookInvalidError(
            "invalid_utf8", f"the body is not valid UTF-8 (at byte {exc.start})"
        ) from None
    try:
        document = json.loads(
            text, parse_int=_parse_int, parse_float=_parse_float, parse_constant=_parse_constant
        )
    except json.JSONDecodeError as exc:
        raise WebhookInvalidError(
            "invalid_json", f"the body is not JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from None
    except RecursionError:
        raise _too_deep("(body)") from None
    _check_tree(document)
    return document


def _too_deep(path: str) -> WebhookInvalidError:
    return WebhookInvalidError(
        "too_deep",
        f"{path}: the body nests deeper than {MAX_DEPTH} levels",
        [FieldProblem("too_deep", path, f"nests deeper than {MAX_DEPTH} levels")],
    )


def _check_tree(document: Any) -> None:
    """Nesting depth and out-of-range numbers, each reported with its path. A first pass without
    paths (a transcript has thousands of nodes, and nearly every body is fine); only when it finds
    a problem does the second pass build paths to name it."""
    if _tree_is_fine(document):
        return
    _name_the_problem(document)


def _tree_is_fine(document: Any) -> bool:
    if not isinstance(document, (dict, list)):
        return not isinstance(document, _OutOfRange)
    stack: list[tuple[Any, int]] = [(document, 0)]
    pop, push = stack.pop, stack.append
    while stack:
        node, depth = pop()
        if depth >= MAX_DEPTH:
            return False
        for value in node.values() if type(node) is dict else node:
            kind = type(value)
            if kind is dict or kind is list:
                if value:
                    push((value, depth + 1))
            elif kind is _OutOfRange:
                return False
    return True


def _name_the_problem(document: Any) -> None:
    """The same walk with paths: raises for the first problem in the first pass's order."""
    if isinstance(document, _OutOfRange):
        raise _out_of_range(())
    if not isinstance(document, (dict, list)):
        return  # a bare scalar: parse_webhook refuses it as not an object
    stack: list[tuple[Any, tuple[int | str, ...]]] = [(document, ())]
    while stack:
        node, path = stack.pop()
        if len(path) >= MAX_DEPTH:
            raise _too_deep(format_path(path))
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for key, value in items:
            kind = type(value)
            if kind is dict or kind is list:
                if value:
                    stack.append((value, (*path, key)))
            elif kind is _OutOfRange:
                raise _out_of_range((*path, key))


def _out_of_range(path: tuple[int | str, ...]) -> WebhookInvalidError:
    where = format_path(path)
    message = "number outside what EventBridge and DynamoDB accept (NaN, Infinity, beyond int64 or 1e126)"
    return WebhookInvalidError(
        "number_out_of_range",
        f"{where}: {message}",
        [FieldProblem("number_out_of_range", where, message)],
    )
