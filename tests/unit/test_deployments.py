"""SPEC §5.3 piece by piece: the configuration, the routing choice, cooldowns, stickiness and
the per-attempt accounting (the behaviour on real sockets is in tests/e2e/test_deployments.py)."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Sequence

import pytest
from starlette.datastructures import Headers

from gateway.balancer import Balancer
from gateway.cli import resolved_view
from gateway.cooldowns import CooldownRule, Cooldowns
from gateway.errors import (
    ModelUnavailable,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamUnavailable,
)
from gateway.metrics import Metrics
from gateway.models import Attempt, ModelTable, deployment_providers
from gateway.providers import RegisteredProvider
from gateway.relay import open_relay
from gateway.settings import ConfigError
from gateway.sticky import conversation_of, rendezvous, rendezvous_order
from tests.conftest import ManualClock, app_client, settings_from
from tests.unit.test_relay import REQUEST, Scripted

PROVIDERS = "".join(f"[providers.{name}]\ntype = 'fake'\n" for name in ("a", "b", "c"))


def entry(*deployments: str, **options: object) -> str:
    extra = "".join(f"{key} = {value!r}\n" for key, value in options.items())
    extra = extra.replace("'", '"').replace("True", "true").replace("False", "false")
    return f"[models.main]\ndeployments = [{', '.join(deployments)}]\n{extra}"


def table(
    toml: str,
    clock: ManualClock | None = None,
    seed: int = 7,
    adapters: dict[str, Scripted] | None = None,
) -> ModelTable:
    settings = settings_from(PROVIDERS + toml)
    adapters = adapters or {}
    providers = {
        name: RegisteredProvider(name, config, adapters.get(name, Scripted(["ok"])))
        for name, config in settings.providers.items()
    }
    balancer = Balancer(Cooldowns(clock or ManualClock()), random.Random(seed))
    return ModelTable(settings, providers, balancer, Metrics())


def served(plan: Sequence[Attempt]) -> list[str]:
    return [attempt.served_by for attempt in plan]


# ---- configuration ----------------------------------------------------------------------------


def test_the_shorthand_is_one_deployment_named_after_its_provider() -> None:
    settings = settings_from(PROVIDERS + "[models.main]\nprovider = 'a'\nmodel = 'x'\n")
    (only,) = settings.models["main"].all_deployments()
    assert (only.provider, only.model, only.label, only.weight) == ("a", "x", "a", 1.0)
    assert served(table("[models.main]\nprovider = 'a'\n").resolve("main")) == ["a"]


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        (
            "[models.main]\nprovider = 'a'\ndeployments = [{provider = 'b'}]\n",
            "give `provider` and `model`, or `deployments`, not both",
        ),
        ("[models.main]\nparams = {}\n", "give `provider` (with `model`), or `deployments`"),
        (entry("{provider = 'a'}", "{provider = 'a'}"), "deployments named 'a' more than once"),
        (entry("{provider = 'a', weight = 0}"), "every deployment has weight 0"),
        (entry("{provider = 'a'}", "{provider = 'zz'}"), "models.main.deployments.1.provider"),
        (entry("{provider = 'a', weight = -1}"), "greater than or equal to 0"),
        (entry("{provider = 'a', name = 'has space'}"), "should match pattern"),
        (entry("{provider = 'a'}", routing="fastest"), "'weighted', 'least-busy' or 'latency'"),
        (
            entry("{provider = 'a', params = {fail_after_chunks = 'x'}}"),
            "models.main.deployments.0.params.fail_after_chunks",
        ),
    ],
)
def test_bad_deployments_are_named_in_the_error(toml: str, message: str) -> None:
    with pytest.raises(ConfigError, match="main") as caught:
        settings_from(PROVIDERS + toml)
    assert message in str(caught.value)


def test_check_config_shows_every_entrys_deployments() -> None:
    settings = settings_from(
        PROVIDERS
        + entry("{provider = 'a', weight = 3, name = 'east'}", "{provider = 'b', model = 'm'}")
    )
    models = resolved_view(settings)["models"]
    assert models["main"]["deployments"] == [
        {"provider": "a", "name": "east", "weight": 3.0, "params": {}},
        {"provider": "b", "model": "m", "name": "b", "weight": 1.0, "params": {}},
    ]
    assert models["story"]["deployments"] == [
        {"provider": "fake", "name": "fake", "weight": 1.0, "params": {}}
    ]


def test_a_deployment_with_its_own_timeouts_gets_a_provider_of_its_own() -> None:
    settings = settings_from(
        PROVIDERS + entry("{provider = 'a', first_token_timeout = 2.5}", "{provider = 'b'}")
    )
    derived = deployment_providers(settings)
    assert list(derived) == ["a@main/a"]
    base, config = derived["a@main/a"]
    assert base == "a"
    assert config.first_token_timeout == 2.5
    assert config.idle_timeout == settings.providers["a"].idle_timeout


def test_params_merge_the_deployments_over_the_entrys() -> None:
    plan = table(
        entry("{provider = 'a', params = {temperature = 0.1}}") + "params = {top_p = 0.5}\n"
    ).resolve("main")
    assert dict(plan[0].params) == {"top_p": 0.5, "temperature": 0.1}


def test_deployments_without_a_key_are_left_out_and_none_left_is_unavailable() -> None:
    keyed = "[providers.k]\ntype = 'openai'\nbase_url = 'http://127.0.0.1:9/v1'\n"
    keyless = "[providers.n]\ntype = 'openai'\nbase_url = 'http://127.0.0.1:9/v1'\n"
    keyless += "api_key_env = 'NOT_SET_ANYWHERE'\n"
    models = table(
        keyed
        + keyless
        + entry("{provider = 'n'}", "{provider = 'k', weight = 0}")
        + "[models.dark]\nprovider = 'n'\n"
    )
    assert served(models.resolve("main")) == ["k"]
    assert "dark" not in models.available()
    with pytest.raises(ModelUnavailable, match="NOT_SET_ANYWHERE"):
        models.resolve("dark")


# ---- routing ----------------------------------------------------------------------------------


def test_the_plan_is_the_chosen_deployment_the_others_then_the_fallbacks() -> None:
    models = table(
        entry("{provider = 'a', weight = 0}", "{provider = 'b'}", fallbacks=["other", "story"])
        + "[models.other]\ndeployments = [{provider = 'c', name = 'c1'}, {provider = 'a'}]\n"
    )
    plan = models.resolve("main")
    assert served(plan)[:2] == ["b", "a"]  # weight 0: never first, still a failover target
    assert sorted(served(plan)[2:4]) == ["a", "c1"]
    assert [a.model for a in plan] == ["main", "main", "other", "other", "story"]


def test_weighted_follows_the_weights() -> None:
    models = table(entry("{provider = 'a', weight = 3}", "{provider = 'b', weight = 1}"))
    firsts = Counter(models.resolve("main")[0].served_by for _ in range(4000))
    assert 2800 <= firsts["a"] <= 3200  # seeded: the same numbers every run


def test_least_busy_picks_the_fewest_in_flight() -> None:
    models = table(entry("{provider = 'a'}", "{provider = 'b'}", routing="least-busy"))
    a, b = (attempt.deployment for attempt in models._pools["main"].attempts)  # type: ignore[union-attr]
    assert a is not None and b is not None
    a.in_flight = 2
    assert {models.resolve("main")[0].served_by for _ in range(50)} == {"b"}
    b.in_flight = 3
    assert {models.resolve("main")[0].served_by for _ in range(50)} == {"a"}


def test_latency_measures_each_once_prefers_the_fastest_and_still_explores() -> None:
    models = table(entry("{provider = 'a'}", "{provider = 'b'}", routing="latency"))
    balancer = models.balancer
    first = models.resolve("main")[0]
    balancer.primed(first, 0.5)
    second = models.resolve("main")[0]
    assert second.served_by != first.served_by  # the unmeasured one is tried before
    balancer.primed(second, 2.0)
    firsts = Counter(models.resolve("main")[0].served_by for _ in range(1000))
    assert firsts[first.served_by] > 900  # the fastest, but
    assert firsts[second.served_by] > 10  # the slower one is still measured now and then
    for _ in range(10):  # the fast one slows down: the decaying average follows
        balancer.primed(first, 5.0)
    assert Counter(models.resolve("main")[0].served_by for _ in range(100))[second.served_by] > 80


async def test_cooling_deployments_are_left_out_and_the_earliest_tried_when_all_are() -> None:
    clock = ManualClock()
    models = table(entry("{provider = 'a'}", "{provider = 'b'}", "{provider = 'c'}"), clock)
    cooldowns, rule = models.balancer.cooldowns, CooldownRule(cooldown_s=30)
    await cooldowns.rate_limited("main/a", rule, 100)
    assert {tuple(sorted(served(models.resolve("main")))) for _ in range(20)} == {("b", "c")}
    await cooldowns.rate_limited("main/b", rule, None)
    await cooldowns.rate_limited("main/c", rule, 50)
    assert served(models.resolve("main")) == ["b"]  # ends in 30 s, before c (50) and a (100)
    clock.advance(31)
    assert served(models.resolve("main")) == ["b"]  # b is back; a and c still cool


# ---- cooldowns --------------------------------------------------------------------------------


async def test_failures_cool_down_after_the_threshold_within_the_window() -> None:
    clock = ManualClock()
    cooldowns, rule = Cooldowns(clock), CooldownRule(failures=3, window_s=60, cooldown_s=30)
    assert await cooldowns.failed("d", rule, None) == 0
    clock.advance(59)
    assert await cooldowns.failed("d", rule, None) == 0
    clock.advance(2)  # the first has left the window
    assert await cooldowns.failed("d", rule, None) == 0
    ends = await cooldowns.failed("d", rule, None)
    assert ends == clock.now + 30
    assert await cooldowns.failed("d", rule, 90) == ends  # counting again from zero
    assert await cooldowns.rate_limited("d", rule, 90) == clock.now + 90  # Retry-After longer
    assert await cooldowns.rate_limited("d", rule, 5) == clock.now + 90  # never shortened


async def test_cooldown_s_zero_never_cools() -> None:
    cooldowns = Cooldowns(ManualClock())
    assert await cooldowns.rate_limited("d", CooldownRule(cooldown_s=0), None) == 0


async def test_attempts_are_accounted_per_deployment() -> None:
    clock = ManualClock()
    models = table(
        entry("{provider = 'a', weight = 0}", "{provider = 'b'}", cooldown_failures=1),
        clock,
        adapters={"b": Scripted(UpstreamUnavailable("down"), UpstreamRejected("no"), "hang")},
    )
    watcher = Watcher(models.balancer)
    relay = await open_relay(models.resolve("main"), REQUEST, watcher)
    assert relay.provider == "a"  # b failed (and cools down), a served
    b_key, a_key = "main/b", "main/a"
    assert models.balancer.cooldowns.ends(b_key) == clock.now + 30
    deployments = {d.key: d for d in models.balancer.deployments}
    assert (deployments[a_key].in_flight, deployments[b_key].in_flight) == (1, 0)
    models.balancer.ended(relay.attempt)
    assert deployments[a_key].in_flight == 0
    assert deployments[a_key].ttft is not None
    clock.advance(31)
    with pytest.raises(UpstreamRejected):  # a 400 is the request's fault: no cooldown
        await open_relay(models.resolve("main"), REQUEST, watcher)
    assert models.balancer.cooldowns.ends(b_key) < clock.now
    watcher.started.clear()
    task = asyncio.ensure_future(open_relay(models.resolve("main"), REQUEST, watcher))
    await watcher.started.wait()
    assert deployments[b_key].in_flight == 1  # b hangs before its first token
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert deployments[b_key].in_flight == 0  # abandoned: not counted as busy forever


class Watcher:
    def __init__(self, balancer: Balancer) -> None:
        self.balancer = balancer
        self.started = asyncio.Event()

    def attempt_started(self, attempt: Attempt) -> None:
        self.balancer.started(attempt)
        self.started.set()

    async def attempt_failed(self, attempt: Attempt, error: Exception) -> None:
        await self.balancer.failed(attempt, error)  # type: ignore[arg-type]

    def attempt_abandoned(self, attempt: Attempt) -> None:
        self.balancer.ended(attempt)

    def attempt_primed(self, attempt: Attempt, seconds: float) -> None:
        self.balancer.primed(attempt, seconds)


async def test_a_lone_deployment_never_cools() -> None:
    models = table(
        "[models.main]\nprovider = 'a'\n",
        adapters={"a": Scripted(UpstreamRateLimited("slow", retry_after=60), ["ok"])},
    )
    watcher = Watcher(models.balancer)
    with pytest.raises(UpstreamRateLimited):
        await open_relay(models.resolve("main"), REQUEST, watcher)
    assert models.balancer.cooldowns.until == {}  # nowhere to steer to: no Redis call either


# ---- sticky conversations ---------------------------------------------------------------------


def test_the_conversation_comes_from_the_session_header_the_body_or_codex() -> None:
    assert conversation_of(Headers({"x-session-id": "s"}), "body") == "s"
    assert conversation_of(Headers({"session_id": "codex"}), "body") == "body"
    assert conversation_of(Headers({"session_id": "codex"})) == "codex"
    assert conversation_of(Headers({"session-id": "codex"})) == "codex"
    assert conversation_of(Headers({})) is None


def test_rendezvous_is_the_same_in_every_process_and_moves_only_what_it_must() -> None:
    names = ["a", "b", "c", "d"]
    # A fixed answer: BLAKE2, not Python's per-process salted hash.
    assert rendezvous_order("chat-42", names, str, lambda _: 1.0) == ["c", "b", "d", "a"]
    before = {f"k{n}": rendezvous(f"k{n}", names, str, lambda _: 1.0) for n in range(400)}
    after = {key: rendezvous(key, names[1:], str, lambda _: 1.0) for key in before}
    moved = {key for key in before if before[key] != after[key]}
    assert moved == {key for key, home in before.items() if home == "a"}
    assert 60 <= len(moved) <= 140  # about a quarter lived on "a"


def test_rendezvous_follows_the_weights() -> None:
    homes = Counter(
        rendezvous(f"k{n}", ["x", "y"], str, {"x": 3.0, "y": 1.0}.__getitem__) for n in range(2000)
    )
    assert 1350 <= homes["x"] <= 1650


def test_sticky_plans_put_the_conversations_home_first_then_its_next_choice() -> None:
    models = table(entry("{provider = 'a'}", "{provider = 'b'}", "{provider = 'c'}"))
    plans = {tuple(served(models.resolve("main", "chat-42"))) for _ in range(20)}
    assert plans == {("c", "b", "a")}


async def test_an_entry_of_deployments_is_listed_as_owned_by_its_first_provider() -> None:
    settings = settings_from(PROVIDERS + entry("{provider = 'b'}", "{provider = 'a'}"))
    async with app_client(settings) as (client, _):
        listed = (await client.get("/v1/models")).json()["data"]
        one = (await client.get("/v1/models/main")).json()
    assert {"id": "main", "object": "model", "created": 0, "owned_by": "b"} in listed
    assert one["owned_by"] == "b"


def test_a_provider_model_fallback_follows_the_deployments() -> None:
    models = table(entry("{provider = 'a'}", "{provider = 'b'}", fallbacks=["c/other", "c/other"]))
    plan = models.resolve("main")
    assert [(a.model, a.upstream_model) for a in plan[2:]] == [("c/other", "other")]
    assert plan[2].deployment is None  # a name a client could make up: no series of its own
