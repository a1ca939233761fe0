from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from functools import partial

import pytest

from gateway.errors import (
    GatewayError,
    UpstreamProtocolError,
    UpstreamRateLimited,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from gateway.models import Attempt, ModelTable, to_chat_request
from gateway.providers import RegisteredProvider
from gateway.providers.base import ChatRequest, ProviderSettings, StreamOutcome
from gateway.relay import open_relay
from gateway.schemas import StreamRequest
from tests.conftest import settings_from


class Scripted:
    """An adapter whose attempts fail or succeed as scripted, one script entry per call."""

    def __init__(self, *script: GatewayError | list[str] | str) -> None:
        self.script = list(script)
        self.calls = 0
        self.closed = 0

    async def stream(
        self, request: ChatRequest, outcome: StreamOutcome
    ) -> AsyncIterator[list[str]]:
        step = self.script[min(self.calls, len(self.script) - 1)]
        self.calls += 1
        try:
            if isinstance(step, GatewayError):
                raise step
            if step == "hang":
                await asyncio.Event().wait()
            if step == "finish-empty":
                outcome.finish_reason = "refusal"
                return
            if step == "end-empty":
                return
            if step == "bug":
                raise ValueError("an adapter bug")
            for delta in step:
                if delta == "hang":
                    await asyncio.Event().wait()
                if delta == "break":
                    raise UpstreamUnavailable("the stream broke")
                if delta == "bug":
                    raise KeyError("choices")
                yield [delta]
            outcome.finish_reason = "stop"
        finally:
            self.closed += 1

    async def aclose(self) -> None:
        return None


def attempt(adapter: Scripted, name: str = "m", **config: float) -> Attempt:
    settings = ProviderSettings(**config)  # type: ignore[arg-type]
    return Attempt(name, RegisteredProvider(name, settings, adapter), "upstream-" + name)


REQUEST = partial(to_chat_request, request=StreamRequest(prompt="hi"))


async def drain(relay_rest: AsyncIterator[list[str]]) -> list[str]:
    """The rest's deltas, flattened from the batches it yields (here one delta each)."""
    return [delta async for batch in relay_rest for delta in batch]


async def test_relay_primes_the_first_delta_and_hands_back_the_rest() -> None:
    adapter = Scripted(["a", "b", "c"])
    relay = await open_relay([attempt(adapter)], REQUEST)
    assert relay.first == ["a"]
    assert await drain(relay.rest) == ["b", "c"]
    assert (relay.model, relay.provider, relay.outcome.finish_reason) == ("m", "m", "stop")


async def test_relay_retryable_errors_move_to_the_next_fallback() -> None:
    first, second = Scripted(UpstreamUnavailable("down")), Scripted(["ok"])
    relay = await open_relay([attempt(first, "a"), attempt(second, "b")], REQUEST)
    assert (relay.first, relay.model) == (["ok"], "b")
    assert first.closed == 1


async def test_relay_failure_after_the_first_delta_never_switches_to_a_fallback() -> None:
    # A fallback's text after a partial answer would be a second answer glued to the first.
    first, fallback = Scripted(["a", "b", "break"]), Scripted(["from the fallback"])
    relay = await open_relay([attempt(first, "a"), attempt(fallback, "b")], REQUEST)
    received = [*relay.first]
    with pytest.raises(UpstreamUnavailable, match="broke"):
        async for batch in relay.rest:
            received += batch
    assert received == ["a", "b"]
    assert (relay.model, fallback.calls, first.closed) == ("a", 0, 1)


async def test_relay_non_retryable_errors_stop_at_once() -> None:
    from gateway.errors import UpstreamRejected

    second = Scripted(["ok"])
    with pytest.raises(UpstreamRejected):
        await open_relay([attempt(Scripted(UpstreamRejected("no")), "a"), attempt(second)], REQUEST)
    assert second.calls == 0


async def test_relay_last_error_is_raised_when_every_fallback_fails() -> None:
    plan = [
        attempt(Scripted(UpstreamUnavailable("x")), "a"),
        attempt(Scripted(UpstreamRateLimited("y", retry_after=3)), "b"),
    ]
    with pytest.raises(UpstreamRateLimited) as caught:
        await open_relay(plan, REQUEST)
    assert caught.value.headers() == {"Retry-After": "3"}


async def test_relay_retries_the_same_entry_when_the_provider_allows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    waits: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        waits.append(seconds)

    monkeypatch.setattr("gateway.relay.asyncio.sleep", fake_sleep)
    adapter = Scripted(
        UpstreamRateLimited("slow", retry_after=30), UpstreamUnavailable("x"), ["ok"]
    )
    relay = await open_relay([attempt(adapter, retries=2, retry_after_max_s=2)], REQUEST)
    assert relay.first == ["ok"]
    assert adapter.calls == 3
    assert waits == [2, 0]  # Retry-After honoured up to retry_after_max_s


async def test_relay_first_token_timeout_is_504_and_closes_the_attempt() -> None:
    adapter = Scripted("hang")
    with pytest.raises(UpstreamTimeout, match="no first token"):
        await open_relay([attempt(adapter, first_token_timeout=0.01)], REQUEST)
    assert adapter.closed == 1


async def test_relay_total_timeout_ends_the_stream_after_the_commit() -> None:
    adapter = Scripted(["a", "hang"])
    relay = await open_relay([attempt(adapter, total_timeout=0.05)], REQUEST)
    assert relay.first == ["a"]
    with pytest.raises(UpstreamTimeout, match="total time-out"):
        await drain(relay.rest)
    assert adapter.closed == 1


async def test_relay_total_timeout_passes_a_stream_that_finishes_in_time() -> None:
    relay = await open_relay([attempt(Scripted(["a", "b"]), total_timeout=60)], REQUEST)
    assert await drain(relay.rest) == ["b"]
    await relay.aclose()


async def test_relay_stream_with_no_text_and_no_finish_is_a_protocol_error() -> None:
    with pytest.raises(UpstreamProtocolError):
        await open_relay([attempt(Scripted("end-empty"))], REQUEST)


async def test_relay_stream_with_no_text_but_a_finish_is_an_empty_answer() -> None:
    relay = await open_relay([attempt(Scripted("finish-empty"))], REQUEST)
    assert relay.first == []
    assert await drain(relay.rest) == []
    assert relay.outcome.finish_reason == "refusal"


async def test_relay_adapter_bug_before_the_first_delta_is_a_protocol_error_and_falls_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    broken, healthy = Scripted("bug"), Scripted(["ok"])
    with pytest.raises(UpstreamProtocolError) as caught:
        await open_relay([attempt(broken)], REQUEST)
    assert caught.value.type == "upstream_protocol"
    assert "ValueError" in caplog.text  # the bug is logged with its traceback, for a fix
    relay = await open_relay([attempt(broken, "a"), attempt(healthy, "b")], REQUEST)
    assert (relay.first, relay.model) == (["ok"], "b")
    assert broken.closed == 2


@pytest.mark.parametrize("total_timeout", [None, 60.0])
async def test_relay_adapter_bug_after_the_first_delta_is_a_protocol_error_in_the_stream(
    total_timeout: float | None,
) -> None:
    adapter = Scripted(["a", "b", "bug", "never"])
    config = {} if total_timeout is None else {"total_timeout": total_timeout}
    relay = await open_relay([attempt(adapter, **config)], REQUEST)
    deltas = [*relay.first]
    with pytest.raises(UpstreamProtocolError):
        async for batch in relay.rest:
            deltas += batch
    assert deltas == ["a", "b"]
    assert adapter.closed == 1


def test_model_table_plans_fallbacks_once_without_duplicates() -> None:
    settings = settings_from(
        "[models.a]\nprovider='fake'\nfallbacks=['b','a','story','b']\n"
        "[models.b]\nprovider='fake'\nmodel='bee'\nparams={temperature=0.5}\n"
    )
    providers = {"fake": RegisteredProvider("fake", settings.providers["fake"], Scripted([]))}
    table = ModelTable(settings, providers)
    assert [a.model for a in table.resolve("a")] == ["a", "b", "story"]
    assert table.resolve("b")[0].upstream_model == "bee"
    assert table.resolve(None)[0].model == "story"
    assert set(table.names()) == {"a", "b", "story"}


async def test_relay_a_first_tool_call_commits_and_an_answer_of_calls_only_is_whole() -> None:
    # SPEC §4.9: the first part of any kind commits; a later failure never falls back.
    from gateway.parts import ReasoningDelta, ToolCallDelta, ToolCallEnd, ToolCallStart

    call = [ToolCallStart(0, "c", "t"), ToolCallDelta(0, "{}"), ToolCallEnd(0)]
    relay = await open_relay([attempt(Scripted(call))], REQUEST)  # type: ignore[arg-type]
    assert relay.first == [call[0]] and await drain(relay.rest) == call[1:]
    assert relay.outcome.finish_reason == "stop"
    thinking, fallback = Scripted([ReasoningDelta("hm"), "break"]), Scripted(["text"])  # type: ignore[list-item]
    relay = await open_relay([attempt(thinking, "a"), attempt(fallback, "b")], REQUEST)
    assert (relay.first, relay.model) == ([ReasoningDelta("hm")], "a")
    with pytest.raises(UpstreamUnavailable):
        await drain(relay.rest)
    assert fallback.calls == 0
