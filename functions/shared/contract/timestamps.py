"""Ebbot instants as exact integer nanoseconds.

Ebbot stamps messages with strings in seconds or in milliseconds, both with a 9-digit fraction
("1672531200.427187915", "1672531200000.397183857"), and envelopes with integer milliseconds.
A float has 15-17 significant digits, so two messages a few hundred nanoseconds apart can compare
equal or swap as floats: every instant is parsed with Decimal and kept as an int of nanoseconds.

The unit rule: an integer part above 1e11 is milliseconds, otherwise seconds. 1e11 seconds is the
year 5138 and 1e11 milliseconds is 1973, so no instant Ebbot can send is ambiguous.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from decimal import ROUND_FLOOR, Decimal, InvalidOperation
from functools import lru_cache

MILLISECONDS_THRESHOLD = Decimal(10) ** 11
# The common form, always an instant: up to 13 digits is before the year 5138 read as seconds and
# before 2286 read as milliseconds, and a fraction of up to 9 digits is at most nanoseconds.
PLAIN_INSTANT = re.compile(r"\s*(\d{1,13})(?:\.(\d{0,9}))?\s*", re.ASCII)
_MS_THRESHOLD_INT = 10**11
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
NS_PER_SECOND = 10**9
NS_PER_MILLISECOND = 10**6
# datetime cannot represent years past 9999; nothing Ebbot sends is near it.
MAX_NS = int(datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC).timestamp()) * NS_PER_SECOND
# Longest text accepted as an instant: a 13-digit millisecond part, a dot and a generous fraction.
_MAX_TEXT = 40


class InvalidInstantError(ValueError):
    """The value is not an instant in Ebbot's formats. The message never repeats the value."""


def to_decimal(value: object) -> Decimal:
    """The value as a finite, non-negative Decimal; bools and non-numbers are refused."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise InvalidInstantError("an instant must be a number or a numeric string")
    if isinstance(value, str):
        text = value.strip()
        if not text or len(text) > _MAX_TEXT:
            raise InvalidInstantError("an instant string must hold a number of at most 40 characters")
    else:
        # repr() of a float is the shortest text that round-trips, so Decimal sees what JSON said.
        text = repr(value) if isinstance(value, float) else str(value)
    try:
        number = Decimal(text)
    except InvalidOperation:
        raise InvalidInstantError("an instant string must hold a decimal number") from None
    if not number.is_finite() or number < 0:
        raise InvalidInstantError("an instant must be a finite, non-negative number")
    return number


def _plain_ns(value: object) -> int | None:
    """The common forms in integer arithmetic: an int, or PLAIN_INSTANT ("1672531200.427187915").
    At most 22 digits, so the Decimal route is exact for them too and both give the same
    nanoseconds; anything else returns None and goes the Decimal route."""
    if type(value) is int:
        if value < 0:
            return None
        return value * (NS_PER_MILLISECOND if value > _MS_THRESHOLD_INT else NS_PER_SECOND)
    match = PLAIN_INSTANT.fullmatch(value) if type(value) is str else None
    if match is None:
        return None
    whole, fraction = match.group(1), match.group(2) or ""
    units = int(whole)  # seconds or milliseconds, by the unit rule
    scale = NS_PER_MILLISECOND if units > _MS_THRESHOLD_INT else NS_PER_SECOND
    # The fraction's nanoseconds, floored as Decimal's ROUND_FLOOR does.
    return units * scale + (int(fraction) * scale // 10 ** len(fraction) if fraction else 0)


def to_ns(value: object) -> int:
    """Nanoseconds since the epoch for an Ebbot instant (seconds or milliseconds, see module doc)."""
    ns = _plain_ns(value)
    if ns is not None:
        if ns > MAX_NS:
            raise InvalidInstantError("an instant must fall before the year 10000")
        return ns
    number = to_decimal(value)
    scale = (
        NS_PER_MILLISECOND
        if number.to_integral_value(ROUND_FLOOR) > MILLISECONDS_THRESHOLD
        else NS_PER_SECOND
    )
    ns = int((number * scale).to_integral_value(ROUND_FLOOR))
    if ns > MAX_NS:
        raise InvalidInstantError("an instant must fall before the year 10000")
    return ns


def precision_digits(value: object) -> int:
    """How many digits of a second an instant's spelling gives, up to 9 (nanoseconds):
    "1672531205.397183857" 9, "1672531205397.183" 6, integer milliseconds 3, integer seconds 0.
    Two spellings of one instant at one precision give the same nanoseconds (to_ns)."""
    number = to_decimal(value)
    exponent = number.as_tuple().exponent
    fraction = -exponent if isinstance(exponent, int) and exponent < 0 else 0
    if number.to_integral_value(ROUND_FLOOR) > MILLISECONDS_THRESHOLD:
        fraction += 3
    return min(9, fraction)


@lru_cache(maxsize=64)
def _iso_date(days: int) -> str:
    """The ISO date `days` after 1970-01-01 (a webhook's instants fall on a day or two)."""
    return date.fromordinal(_EPOCH_ORDINAL + days).isoformat()


def ns_to_iso(ns: int) -> str:
    """ISO-8601 UTC with microseconds, e.g. 2023-01-01T00:00:00.427187Z (sub-microsecond is in the ns).

    Integer arithmetic with the date cached: three per webhook at ingest, where datetime's
    construction and isoformat cost twice as much. A test holds it equal to datetime's text."""
    seconds = ns // NS_PER_SECOND
    second = seconds % 86400  # of the day
    return "%sT%02d:%02d:%02d.%06dZ" % (  # noqa: UP031 (%-format: faster here than an f-string)
        _iso_date(seconds // 86400),
        second // 3600,
        second // 60 % 60,
        second % 60,
        ns // 1000 % 1_000_000,
    )


def ns_to_date(ns: int) -> str:
    """The UTC calendar date of an instant, e.g. 2023-01-01."""
    return datetime.fromtimestamp(ns // NS_PER_SECOND, tz=UTC).strftime("%Y-%m-%d")
