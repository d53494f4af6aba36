"""Who may post: a token in the URL path (all Ebbot can send) or an `Authorization: Bearer` header.

Tokens live in a Secrets Manager secret generated at deploy time. The secret holds one token, or a
JSON object whose string values (and lists of strings) are all valid tokens, so that a new token
can be added, Ebbot reconfigured, and the old one removed without downtime (README, "Deploy to AWS").
The secret is cached; a token that matches nothing triggers one refresh (at most one per
`min_refresh_interval_s`), so a rotated-in token works at once without letting bad requests
hammer Secrets Manager. Comparison is constant-time, and no token is ever logged.
"""

from __future__ import annotations

import hmac
import json
import threading
import time
from collections.abc import Callable, Iterable

from ingest.errors import AuthUnavailableError
from shared.runtime.observability import logger

MIN_TOKEN_LENGTH = 16


def parse_tokens(secret: str) -> tuple[bytes, ...]:
    """Every token a secret string holds: itself, or the string values of a JSON object."""
    try:
        document = json.loads(secret)
    except ValueError:
        document = secret
    values: Iterable[object]
    if isinstance(document, dict):
        values = [
            item for value in document.values() for item in (value if isinstance(value, list) else [value])
        ]
    else:
        values = [secret]
    tokens = tuple(v.strip().encode() for v in values if isinstance(v, str) and v.strip())
    strong = tuple(t for t in tokens if len(t) >= MIN_TOKEN_LENGTH)
    if len(strong) < len(tokens):
        logger.warning("ignored tokens shorter than the minimum", ignored=len(tokens) - len(strong))
    return strong


def bearer_token(authorization: str | None) -> str | None:
    """The credentials of an `Authorization: Bearer <token>` header (scheme case-insensitive)."""
    if not authorization:
        return None
    scheme, _, credentials = authorization.strip().partition(" ")
    return credentials.strip() or None if scheme.lower() == "bearer" else None


class TokenVerifier:
    def __init__(
        self,
        load_secret: Callable[[], str],
        *,
        max_age_s: float = 300.0,
        min_refresh_interval_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._load_secret = load_secret
        self._max_age_s = max_age_s
        self._min_refresh_interval_s = min_refresh_interval_s
        self._clock = clock
        self._tokens: tuple[bytes, ...] | None = None
        self._loaded_at = float("-inf")
        # Lambda runs one request at a time per sandbox; a threaded host (the local stack) must
        # not send every waiting request to Secrets Manager at once.
        self._lock = threading.Lock()

    def verify(self, *candidates: str | None) -> bool:
        """True if any candidate equals a valid token."""
        offered = [c.encode() for c in candidates if c]
        if not offered:
            return False
        if self._matches(offered, self._current(force=False)):
            return True
        if self._clock() - self._loaded_at >= self._min_refresh_interval_s:
            return self._matches(offered, self._current(force=True))
        return False

    def _current(self, *, force: bool) -> tuple[bytes, ...]:
        with self._lock:
            return self._current_locked(force=force)

    def _current_locked(self, *, force: bool) -> tuple[bytes, ...]:
        age = self._clock() - self._loaded_at
        # A forced refresh that another request has just done is not done again.
        force = force and age >= self._min_refresh_interval_s
        if self._tokens is None or force or age >= self._max_age_s:
            try:
                secret = self._load_secret()
            except Exception as exc:
                if self._tokens is None:
                    raise AuthUnavailableError from exc
                # Keep serving the tokens we had rather than turning a Secrets Manager outage into
                # 401s, and wait a full interval before asking again.
                logger.warning("token secret refresh failed; keeping cached tokens", error=type(exc).__name__)
                self._loaded_at = self._clock()
                return self._tokens
            self._tokens = parse_tokens(secret)
            self._loaded_at = self._clock()
        return self._tokens

    @staticmethod
    def _matches(offered: list[bytes], tokens: tuple[bytes, ...]) -> bool:
        # Compare against every token, without short-circuit, so timing says nothing.
        found = False
        for candidate in offered:
            for token in tokens:
                found |= hmac.compare_digest(candidate, token)
        return found
