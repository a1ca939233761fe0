"""Every upstream's reasoning and tool calls as stream parts, under every cut of the bytes.

One recorded-shape body per upstream dialect (tests/wire/*/tools.*): reasoning, text and
parallel calls. The parts must come out the same whatever the network's chunking: ids as the
upstream gave them (gateway-made where it gave none), each call's place counted per answer,
fragments whose concatenation is the arguments' JSON, every call ended.
"""

from __future__ import annotations

import re

import orjson
import pytest
import respx

from gateway.parts import (
    ReasoningDelta,
    ReasoningEnd,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
)
from gateway.providers.base import Delta
from tests.conftest import wire
from tests.splits import every_split, multibyte_splits
from tests.unit.providers.helpers import collect_all, make_adapter, mock

UPSTREAM_IDS = {
    "call_HjeqP7YeRkoNj0de9e3U4X4B",
    "call_2",
    "toolu_01T1x1fJ34qAmk2tNTrN7Up6",
    "toolu_02",
    "call_ab12cd34",
}
MADE = "<made>"  # a gateway-made id: `call_` and 24 of [A-Za-z0-9]
WRITE_A = '{"path": "a.txt", "text": "日本"}'

EXPECTED: dict[str, list[Delta]] = {
    "openai": [
        ReasoningDelta("Two files, "),
        ReasoningDelta("then done."),
        "Writing é.",
        ToolCallStart(0, "call_HjeqP7YeRkoNj0de9e3U4X4B", "write_file"),
        ToolCallDelta(0, '{"path": "a.txt", '),
        ToolCallDelta(0, '"text": "日本"}'),
        ToolCallEnd(0),
        ToolCallStart(1, "call_2", "read_file"),
        ToolCallDelta(1, "{}"),
        ToolCallEnd(1),
    ],
    "anthropic": [
        ReasoningDelta("Two files."),
        ReasoningEnd("EqQBCgIYAhIM1gbcDa9GJwZA2b3h", "anthropic"),
        ReasoningEnd("EmwKAhgBEgy3va3pzix", "anthropic", redacted=True),
        "Writing é.",
        ToolCallStart(0, "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "write_file"),
        ToolCallDelta(0, '{"path": "a.txt", '),
        ToolCallDelta(0, '"text": "日本"}'),
        ToolCallEnd(0),
        ToolCallStart(1, "toolu_02", "read_file"),
        ToolCallDelta(1, "{}"),
        ToolCallEnd(1),
    ],
    "gemini": [
        ReasoningDelta("Two files, then done."),
        "Writing é.",
        ReasoningEnd("AY89a18a8/Loc2wl", "gemini"),
        ToolCallStart(0, MADE, "write_file"),
        ToolCallDelta(0, '{"path":"a.txt","text":"日本"}'),
        ToolCallEnd(0),
        ToolCallStart(1, MADE, "write_file"),
        ToolCallDelta(1, '{"path":"b.txt","text":"x"}'),
        ToolCallEnd(1),
        ToolCallStart(2, MADE, "read_file"),
        ToolCallDelta(2, "{}"),
        ToolCallEnd(2),
    ],
    "ollama": [
        ReasoningDelta("Two files, then done."),
        "Writing é.",
        ToolCallStart(0, "call_ab12cd34", "write_file"),
        ToolCallDelta(0, '{"path":"a.txt","text":"日本"}'),
        ToolCallEnd(0),
        ToolCallStart(1, MADE, "read_file"),
        ToolCallDelta(1, "{}"),
        ToolCallEnd(1),
    ],
}
FINISH = {
    "openai": "tool_calls",
    "anthropic": "tool_use",
    "gemini": "tool_calls",
    "ollama": "tool_calls",
}
FILES = {"ollama": "ollama/tools.ndjson"}


def normalised(deltas: list[Delta]) -> list[Delta]:
    """Gateway-made ids replaced by MADE (after checking their form and that they differ)."""
    made = [d.id for d in deltas if isinstance(d, ToolCallStart) and d.id not in UPSTREAM_IDS]
    assert all(re.fullmatch(r"call_[A-Za-z0-9]{24}", i) for i in made), made
    assert len(set(made)) == len(made)
    return [
        ToolCallStart(d.index, MADE, d.name) if isinstance(d, ToolCallStart) and d.id in made else d
        for d in deltas
    ]


def merged_text(deltas: list[Delta]) -> list[Delta]:
    """Adjacent text and reasoning deltas merged: a cut may split one upstream delta's bytes
    but never changes the text; the parts' own boundaries are what is compared."""
    out: list[Delta] = []
    for d in deltas:
        if out and isinstance(d, str) and isinstance(out[-1], str):
            out[-1] += d
        else:
            out.append(d)
    return out


@pytest.mark.parametrize("kind", ["openai", "anthropic", "gemini", "ollama"])
async def test_reasoning_and_parallel_calls_are_parts_under_every_cut(
    respx_mock: respx.MockRouter, kind: str
) -> None:
    body = wire(FILES.get(kind, f"{kind}/tools.sse"))
    adapter = make_adapter(kind)
    for pieces in [*every_split(body), *multibyte_splits(body)]:
        mock(respx_mock, kind, pieces)
        deltas, outcome, error = await collect_all(adapter)
        assert error is None, error
        assert merged_text(normalised(deltas)) == EXPECTED[kind]
        assert outcome.finish_reason == FINISH[kind]
        arguments = "".join(
            d.arguments for d in deltas if isinstance(d, ToolCallDelta) and d.index == 0
        )
        assert orjson.loads(arguments) == orjson.loads(WRITE_A)
