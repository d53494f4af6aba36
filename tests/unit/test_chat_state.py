"""The chat state's stored form: whatever the merges, reading it back gives the same registers."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from shared.storage.chat_state import GROUPS, ChatState, ChatUpdate

VERSIONS = st.builds(
    lambda ns, tie: f"{ns:020d}#{tie:016x}",
    st.integers(min_value=0, max_value=10**19),
    st.integers(min_value=0, max_value=2**64 - 1),
)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)
UPDATES = st.lists(
    st.builds(
        ChatUpdate,
        VERSIONS,
        st.dictionaries(
            st.sampled_from(GROUPS),
            st.dictionaries(st.text(min_size=1, max_size=8), JSON_VALUES, min_size=1, max_size=4),
            min_size=1,
            max_size=3,
        ),
    ),
    max_size=6,
)


def merged(updates: list[ChatUpdate]) -> ChatState:
    state = ChatState()
    for update in updates:
        state.merge(update)
    return state


@given(UPDATES)
def test_the_stored_form_reads_back_as_the_same_registers(updates: list[ChatUpdate]) -> None:
    state = merged(updates)
    text = state.to_json()
    again = ChatState.from_json(text)
    assert again.groups == state.groups
    assert again.to_json() == text
    if updates:
        assert again.latest_ns() == max(int(u.version[:20]) for u in updates)


@given(UPDATES)
def test_each_version_is_stored_once_and_only_if_a_field_still_holds_it(updates: list[ChatUpdate]) -> None:
    state = merged(updates)
    document = json.loads(state.to_json())
    held = {version for registers in state.groups.values() for version, _ in registers.values()}
    assert document["versions"] == sorted(held)
    assert document["values"] == {group: state.values(group) for group in state.groups if state.groups[group]}


@given(UPDATES)
def test_the_first_stored_form_is_still_read(updates: list[ChatUpdate]) -> None:
    state = merged(updates)
    first_form: dict[str, Any] = {
        group: {name: [version, value] for name, (version, value) in registers.items()}
        for group, registers in state.groups.items()
    }
    assert ChatState.from_json(json.dumps(first_form)).groups == state.groups


def test_an_empty_or_missing_state_is_an_empty_chat() -> None:
    assert ChatState.from_json(None).groups == {}
    assert ChatState.from_json("").groups == {}
    assert ChatState().latest_ns() == 0
