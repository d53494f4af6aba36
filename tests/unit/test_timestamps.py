"""Ebbot instants: seconds or milliseconds, parsed exactly into integer nanoseconds."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.contract.timestamps import MAX_NS, InvalidInstantError, ns_to_date, ns_to_iso, to_ns

# Instants from 2001 (1e9 s) to 2286 (1e10 s), in nanoseconds.
instants_ns = st.integers(min_value=10**18, max_value=10**19 - 1)


@pytest.mark.parametrize(
    ("value", "expected_ns"),
    [
        ("1672531200.427187915", 1672531200427187915),  # seconds, 9-digit fraction
        ("1672531200000.397183857", 1672531200000397183),  # milliseconds, 9-digit fraction
        (1672531200000, 1672531200000000000),  # envelope: integer milliseconds
        (1672531200, 1672531200000000000),  # integer seconds
        ("1672531200", 1672531200000000000),
        (" 1672531200.5 ", 1672531200500000000),
        (1672531200.25, 1672531200250000000),  # a JSON float, via its shortest repr
        ("100000000000", 100000000000000000000),  # exactly 1e11: still seconds (year 5138)
        ("100000000001", 100000000001000000),  # just above 1e11: milliseconds (1973)
        ("0", 0),
    ],
)
def test_known_instants(value: object, expected_ns: int) -> None:
    assert to_ns(value) == expected_ns


@pytest.mark.parametrize(
    "value",
    [
        "",
        "abc",
        "1e",
        "NaN",
        "Infinity",
        "-1",
        "-1672531200",
        True,
        None,
        [1],
        {"t": 1},
        float("nan"),
        "9" * 41,
    ],
)
def test_not_an_instant(value: object) -> None:
    with pytest.raises(InvalidInstantError) as caught:
        to_ns(value)
    if isinstance(value, str) and value:
        assert value not in str(caught.value)


def test_beyond_year_9999_is_refused() -> None:
    assert to_ns("99999999999") == 99999999999 * 10**9  # seconds: the year 5138 is fine
    with pytest.raises(InvalidInstantError):
        to_ns("999999999999999")  # milliseconds: the year 33658


def test_iso_and_date() -> None:
    assert ns_to_iso(1672531200427187915) == "2023-01-01T00:00:00.427187Z"
    assert ns_to_date(1672617599999999999) == "2023-01-01"
    assert ns_to_date(1672617600000000000) == "2023-01-02"


@given(st.integers(min_value=0, max_value=MAX_NS + 10**9 - 1))
def test_iso_text_is_what_datetime_writes_for_the_instant(ns: int) -> None:
    """ns_to_iso does its own arithmetic; datetime is the reference, to the microsecond (floored)."""
    moment = datetime(1970, 1, 1) + timedelta(microseconds=ns // 1000)
    assert ns_to_iso(ns) == moment.isoformat(timespec="microseconds") + "Z"


@given(instants_ns)
def test_seconds_and_milliseconds_forms_of_one_instant_agree(ns: int) -> None:
    seconds, frac = divmod(ns, 10**9)
    millis, frac_ms = divmod(ns, 10**6)
    seconds_form = f"{seconds}.{frac:09d}"
    millis_form = f"{millis}.{frac_ms:06d}000"  # Ebbot's 9-digit fraction on milliseconds
    assert to_ns(seconds_form) == ns
    assert to_ns(millis_form) == ns


@given(instants_ns, instants_ns)
def test_order_is_exact_where_floats_are_not(a: int, b: int) -> None:
    text_a = f"{a // 10**9}.{a % 10**9:09d}"
    text_b = f"{b // 10**9}.{b % 10**9:09d}"
    assert (to_ns(text_a) < to_ns(text_b)) == (a < b)
    assert (to_ns(text_a) == to_ns(text_b)) == (a == b)


@given(st.decimals(min_value=0, max_value=Decimal("9999999999999"), places=9, allow_nan=False))
def test_unit_rule(number: Decimal) -> None:
    ns = to_ns(str(number))
    if int(number) > 10**11:
        assert ns == int(number * 10**6)
    else:
        assert ns == int(number * 10**9)


@given(st.integers(min_value=0, max_value=10**13))
def test_envelope_integers_in_milliseconds(ms: int) -> None:
    expected = ms * 10**6 if ms > 10**11 else ms * 10**9
    assert to_ns(ms) == expected


@given(
    st.integers(min_value=0, max_value=10**13 - 1),
    st.text(alphabet="0123456789", max_size=9),
    st.sampled_from(["", " ", "\t"]),
)
def test_digit_strings_are_exact(whole: int, fraction: str, pad: str) -> None:
    """The common forms take an integer shortcut; the result is the exact floor either way."""
    text = f"{pad}{whole}.{fraction}{pad}" if fraction else f"{pad}{whole}{pad}"
    exact = Fraction(text.strip())
    expected = math.floor(exact * (10**6 if math.floor(exact) > 10**11 else 10**9))
    if expected > MAX_NS:
        with pytest.raises(InvalidInstantError):
            to_ns(text)
    else:
        assert to_ns(text) == expected
