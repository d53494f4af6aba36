"""Who may post: a token in the URL path (all Ebbot can send) or an `Authorization: Bearer` header.

Tokens live in a Secrets Manager secret generated at deploy time. The secret holds one token, or a
JSON object whose string values (and lists of strings) are all valid tokens, so that a new token
can be added, Ebbot reconfigured, and the old one removed without downtime
(docs/operations.md, "Rotating the token").
The secret is cached and refreshed in the background (TokenVerifier); a token that matches nothing
triggers one refresh (at most one per `min_refresh_interval_s`), so a rotated-in token works at
once without letting bad requests hammer Secrets Manager. Comparison is constant-time, and no
token is ever logged.
"""

from __future__ import annotations

import hmac
import json
import threading
import time
from collections.abc import Callable, Iterable

from ingest.deadline import retry_within
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


def _never() -> bool:
    return False


def _in_a_thread(work: Callable[[], None]) -> None:
    threading.Thread(target=work, name="token-refresh", daemon=True).start()


class TokenVerifier:
    """Valid tokens, cached. Cold, the secret is read before anything is answered (with retries while
    the request's deadline allows; AuthUnavailableError if it cannot be read). Due for refresh, it
    is read in the background: the request waits at most `stale_wait_s` for the new tokens and
    otherwise goes on with the cached ones, so a Secrets Manager that hangs never holds a warm
    function's answers. A token that matches nothing is looked up once more at once (a token just
    rotated in), at most once per `min_refresh_interval_s`."""

    def __init__(
        self,
        load_secret: Callable[[], str],
        *,
        max_age_s: float = 300.0,
        min_refresh_interval_s: float = 5.0,
        stale_wait_s: float = 0.25,
        clock: Callable[[], float] = time.monotonic,
        spawn: Callable[[Callable[[], None]], None] = _in_a_thread,
    ) -> None:
        self._load_secret = load_secret
        self._max_age_s = max_age_s
        self._min_refresh_interval_s = min_refresh_interval_s
        self._stale_wait_s = stale_wait_s
        self._clock = clock
        self._spawn = spawn
        self._tokens: tuple[bytes, ...] | None = None
        self._loaded_at = float("-inf")
        self._refreshing: threading.Event | None = None
        # Lambda runs one request at a time per sandbox; a threaded host (the local stack) must
        # not send every waiting request to Secrets Manager at once.
        self._lock = threading.Lock()

    def verify(self, *candidates: str | None, may_retry: Callable[[], bool] = _never) -> bool:
        """True if any candidate equals a valid token. `may_retry` says whether another attempt at
        reading the secret still fits the request's time."""
        offered = [c.encode() for c in candidates if c]
        if not offered:
            return False
        if self._matches(offered, self._current(may_retry)):
            return True
        if self._clock() - self._loaded_at >= self._min_refresh_interval_s:
            return self._matches(offered, self._reload(may_retry))
        return False

    def _current(self, may_retry: Callable[[], bool]) -> tuple[bytes, ...]:
        with self._lock:
            if self._tokens is None:
                return self._load_locked(may_retry)
            if self._clock() - self._loaded_at < self._max_age_s:
                return self._tokens
            refreshed = self._refreshing
            if refreshed is None:
                refreshed = self._refreshing = threading.Event()
                self._spawn(lambda: self._refresh(refreshed))
        refreshed.wait(self._stale_wait_s)
        return self._tokens

    def _reload(self, may_retry: Callable[[], bool]) -> tuple[bytes, ...]:
        with self._lock:
            # A refresh that another request has just done is not done again.
            if self._clock() - self._loaded_at < self._min_refresh_interval_s:
                assert self._tokens is not None
                return self._tokens
            return self._load_locked(may_retry)

    def _load_locked(self, may_retry: Callable[[], bool]) -> tuple[bytes, ...]:
        try:
            secret = retry_within(self._load_secret, may_retry)
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

    def _refresh(self, done: threading.Event) -> None:
        """The background refresh of tokens due for it; on failure the cached ones stay."""
        try:
            secret: str | None = self._load_secret()
        except Exception as exc:
            logger.warning("token secret refresh failed; keeping cached tokens", error=type(exc).__name__)
            secret = None
        with self._lock:
            if secret is not None:
                self._tokens = parse_tokens(secret)
            self._loaded_at = self._clock()
            self._refreshing = None
        done.set()

    @staticmethod
    def _matches(offered: list[bytes], tokens: tuple[bytes, ...]) -> bool:
        # Compare against every token, without short-circuit, so timing says nothing.
        found = False
        for candidate in offered:
            for token in tokens:
                found |= hmac.compare_digest(candidate, token)
        return found
