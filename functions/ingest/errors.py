"""What the ingest service raises instead of an answer. The handler maps each to its HTTP status
(ingest.app.STATUS); the service only decides what happens to the body."""

from __future__ import annotations

from shared.contract.errors import FieldProblem, WebhookError, WebhookInvalidError


class NotAuthenticatedError(WebhookError):
    """No token, or none that is valid. Nothing of the request is read."""

    def __init__(self) -> None:
        super().__init__("unauthorized", "Unauthorized")


class AuthUnavailableError(WebhookError):
    """The token secret could not be read, so no request can be authenticated."""

    def __init__(self) -> None:
        super().__init__("auth_unavailable", "cannot authenticate right now; retry later")


class BodyTooLargeError(WebhookError):
    """The body (or what it inflates to) is larger than MAX_BODY_BYTES."""


class UnsupportedEncodingError(WebhookError):
    """A content encoding other than gzip."""


class BotNotAllowedError(WebhookError):
    """A bot the endpoint does not accept (ALLOWED_BOT_IDS)."""


class NotDurableError(WebhookError):
    """Nothing could be made durable: neither the bus nor S3 took the webhook."""

    def __init__(self) -> None:
        super().__init__("storage_unavailable", "could not store the webhook; retry later")


# Authenticated bodies that cannot be used as they are: kept in quarantine for a person to settle.
KEPT_IN_QUARANTINE: tuple[type[WebhookError], ...] = (
    WebhookInvalidError,
    BotNotAllowedError,
    UnsupportedEncodingError,
)

__all__ = [
    "AuthUnavailableError",
    "BodyTooLargeError",
    "BotNotAllowedError",
    "FieldProblem",
    "NotAuthenticatedError",
    "NotDurableError",
    "UnsupportedEncodingError",
    "WebhookError",
    "WebhookInvalidError",
]
