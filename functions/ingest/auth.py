"""Who may post: a token in the URL path (all Ebbot can send) or an `Authorization: Bearer` header.

Tokens live in a Secrets Manager secret generated at deploy time: a JSON object whose `token` (and,
while rotating, `next`) is a valid token of at least 16 characters, so that a new token can be added,
Ebbot reconfigured, and the old one removed without downtime (docs/operations.md, "Rotating the token").
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
from collections.abc import Callable

from ingest.deadline import retry_within
from ingest.errors import AuthUnavailableError
from shared.runtime.observability import logger

MIN_TOKEN_LENGTH = 16
# The keys of the secret's JSON object that hold tokens: the current one and, while rotating, the
# next. Any other key is not a token (a note, say).
TOKEN_KEYS = ("token", "next")


class InvalidSecretError(ValueError):
    """The secret is not `{"token": ..., "next": ...}` with tokens of at least MIN_TOKEN_LENGTH."""


def parse_tokens(secret: str) -> tuple[bytes, ...]:
    """The tokens of the secret: the strings under `token` and `next` of its JSON object.

    A secret that holds none, or a token shorter than MIN_TOKEN_LENGTH, or one that is not a string,
    is refused as a whole (InvalidSecretError): every request is then answered 503 and alarmed,
    rather than the endpoint running on fewer or weaker tokens than the operator meant."""
    try:
        document = json.loads(secret)
    except ValueError:
        raise InvalidSecretError("the secret is not a JSON object") from None
    if not isinstance(document, dict):
        raise InvalidSecretError("the secret is not a JSON object")
    named = [(key, document[key]) for key in TOKEN_KEYS if key in document]
    if not named:
        raise InvalidSecretError(f"the secret holds none of {', '.join(TOKEN_KEYS)}")
    tokens = []
    for key, value in named:
        if not isinstance(value, str):
            raise InvalidSecretError(f"the secret's {key} is not a string")
        token = value.strip().encode("utf-8", "surrogatepass")
        if len(token) < MIN_TOKEN_LENGTH:
            raise InvalidSecretError(f"the secret's {key} is shorter than {MIN_TOKEN_LENGTH} characters")
        tokens.append(token)
    return tuple(tokens)


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
        self._failed_at = float("-inf")
        self._refreshing: threading.Event | None = None
        # Lambda runs one request at a time per sandbox; a threaded host (the local stack) must
        # not send every waiting request to Secrets Manager at once.
        self._lock = threading.Lock()

    def verify(self, *candidates: str | None, may_retry: Callable[[], bool] = _never) -> bool:
        """True if any candidate equals a valid token. `may_retry` says whether another attempt at
        reading the secret still fits the request's time."""
        # surrogatepass: a lone surrogate (a malformed request) is compared, and matches nothing.
        offered = [c.encode("utf-8", "surrogatepass") for c in candidates if c]
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
                # A secret that just failed is not read again at once: not on every request.
                if self._clock() - self._failed_at < self._min_refresh_interval_s:
                    raise AuthUnavailableError
                return self._load_locked(may_retry)
            if self._clock() - self._loaded_at < self._max_age_s:
                return self._tokens
            refreshed, start = self._refreshing, self._refreshing is None
            if refreshed is None:
                refreshed = self._refreshing = threading.Event()
        if start:  # outside the lock, which the refresh takes to store what it read
            self._spawn(lambda: self._refresh(refreshed))
        refreshed.wait(self._stale_wait_s)
        tokens = self._tokens
        if tokens is None:  # the refresh found the secret invalid
            raise AuthUnavailableError
        return tokens

    def _reload(self, may_retry: Callable[[], bool]) -> tuple[bytes, ...]:
        with self._lock:
            # A refresh that another request has just done is not done again.
            if self._tokens is not None and self._clock() - self._loaded_at < self._min_refresh_interval_s:
                return self._tokens
            return self._load_locked(may_retry)

    def _load_locked(self, may_retry: Callable[[], bool]) -> tuple[bytes, ...]:
        try:
            tokens = parse_tokens(retry_within(self._load_secret, may_retry))
        except InvalidSecretError as exc:
            # Its content is wrong, not its service: the tokens held so far go too (503, alarmed).
            self._tokens, self._failed_at = None, self._clock()
            raise AuthUnavailableError from exc
        except Exception as exc:
            if self._tokens is None:
                self._failed_at = self._clock()
                raise AuthUnavailableError from exc
            # Keep serving the tokens we had rather than turning a Secrets Manager outage into
            # 401s, and wait a full interval before asking again.
            logger.warning("token secret refresh failed; keeping cached tokens", error=type(exc).__name__)
            self._loaded_at = self._clock()
            return self._tokens
        self._tokens, self._loaded_at = tokens, self._clock()
        return tokens

    def _refresh(self, done: threading.Event) -> None:
        """The background refresh of tokens due for it; if Secrets Manager fails, the cached ones
        stay; if the secret itself is invalid, they go (every request is then 503, alarmed)."""
        tokens: tuple[bytes, ...] | None = None
        invalid = False
        try:
            tokens = parse_tokens(self._load_secret())
        except InvalidSecretError:
            invalid = True
        except Exception as exc:
            logger.warning("token secret refresh failed; keeping cached tokens", error=type(exc).__name__)
        with self._lock:
            if tokens is not None:
                self._tokens = tokens
            if invalid:
                self._tokens, self._failed_at = None, self._clock()
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
