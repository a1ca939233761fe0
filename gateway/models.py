"""Resolve the `model` a client names into an attempt plan: the entry's deployments, in the
order its routing chooses for this request, then its fallbacks' (SPEC §5.3, §6)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gateway.balancer import Balancer, Deployment, Pool
from gateway.cooldowns import CooldownRule, Cooldowns
from gateway.errors import ModelUnavailable, UnknownModel
from gateway.metrics import Metrics
from gateway.providers import RegisteredProvider
from gateway.providers.base import ChatMessage, ChatRequest, ProviderSettings
from gateway.schemas import StreamRequest
from gateway.settings import DeploymentConfig, ModelEntry, Settings
from gateway.spend import Price

__all__ = ["Attempt", "ModelTable", "deployment_providers", "to_chat_request"]

_KNOWN_PARAMS = ("max_tokens", "temperature", "top_p", "stop", "system")


@dataclass(frozen=True, slots=True, eq=False)
class Attempt:
    """One way to serve a request: which entry, on which provider, as which upstream model."""

    model: str  # the name that served, as in X-Gateway-Model
    provider: RegisteredProvider
    upstream_model: str
    params: Mapping[str, Any] = field(default_factory=dict)
    deployment: Deployment | None = None  # None: a `provider/model` name, not an entry
    price: Price | None = None  # read through gateway.spend.price_of

    @property
    def served_by(self) -> str:
        """The deployment's name (X-Gateway-Provider, logs, metrics); default the provider's."""
        return self.deployment.name if self.deployment is not None else self.provider.name


def deployment_providers(settings: Settings) -> dict[str, tuple[str, ProviderSettings]]:
    """One provider per deployment that sets its own time-outs: its registry name -> (the
    provider it derives from, that provider's configuration with the time-outs replaced).
    The connect and read time-outs live in each provider's pooled client, hence a client of
    its own."""
    derived: dict[str, tuple[str, ProviderSettings]] = {}
    for name, entry in settings.models.items():
        for deployment in entry.all_deployments():
            base = settings.providers.get(deployment.provider)
            if deployment.timeouts() and base is not None:
                config = base.model_copy(update=deployment.timeouts())
                derived[_registry_name(name, deployment)] = (deployment.provider, config)
    return derived


def _registry_name(entry: str, deployment: DeploymentConfig) -> str:
    return f"{deployment.provider}@{entry}/{deployment.label}"


class ModelTable:
    """Every configured entry's deployments built once at start-up, each entry's chain of
    pools (itself, then its fallbacks) too; `provider/model` names on demand.

    A provider whose key variable is unset cannot serve anything: a model whose deployments
    are all on such providers answers 404 `model_unavailable` at once (naming the variable);
    such a deployment is left out of its pool, and such a fallback skipped.
    """

    def __init__(
        self,
        settings: Settings,
        providers: Mapping[str, RegisteredProvider],
        balancer: Balancer | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self._providers = providers
        self._entries = settings.models
        self.default = settings.default_model
        self.missing_keys = settings.missing_keys()
        self.balancer = balancer or Balancer(Cooldowns())
        metrics = metrics or Metrics()
        self._pools = {
            name: self._pool(name, entry, metrics) for name, entry in settings.models.items()
        }
        self._chains = {
            name: chain for name in settings.models if (chain := self._chain(name)) is not None
        }
        # Chains of one-deployment entries plan the same way every time: built once.
        self._fixed = {
            name: tuple(pool.attempts[0] for pool in chain)
            for name, chain in self._chains.items()
            if all(pool.single for pool in chain)
        }

    def names(self) -> list[str]:
        return list(self._entries)

    def available(self) -> list[str]:
        """The configured names that can be served (a deployment's provider has its key)."""
        return [name for name, pool in self._pools.items() if pool is not None]

    def resolve(self, name: str | None, conversation: str | None = None) -> Sequence[Attempt]:
        """The attempts for this request, in order; `conversation` keeps its turns together."""
        name = name or self.default
        fixed = self._fixed.get(name)
        if fixed is not None:
            return fixed
        chain = self._chains.get(name)
        if chain is None:
            return (self._adhoc(name),)
        return [attempt for pool in chain for attempt in pool.plan(conversation)]

    def _pool(self, name: str, entry: ModelEntry, metrics: Metrics) -> Pool | None:
        attempts = []
        for config in entry.all_deployments():
            if config.provider in self.missing_keys:
                continue
            provider = self._providers.get(_registry_name(name, config))
            provider = provider or self._providers[config.provider]
            deployment = Deployment(
                f"{name}/{config.label}",
                config.label,
                config.weight,
                metrics.of_deployment(name, config.label),
            )
            params = {**entry.params, **config.params}
            price = Price.of(config.price or entry.price)  # a deployment's own, else the entry's
            attempts.append(
                Attempt(name, provider, config.model or name, params, deployment, price)
            )
        if not attempts:
            return None
        rule = CooldownRule(entry.cooldown_failures, entry.cooldown_window_s, entry.cooldown_s)
        pool = Pool(attempts, entry.routing, entry.sticky, rule, self.balancer)
        self.balancer.add(pool)
        return pool

    def _chain(self, name: str) -> tuple[Pool, ...] | None:
        """The entry's pool then its fallbacks' (those that can serve); None: it cannot."""
        first = self._pools[name]
        if first is None:
            return None
        fallbacks = dict.fromkeys(self._entries[name].fallbacks)
        fallbacks.pop(name, None)
        chain = [first]
        for fallback in fallbacks:
            pool = self._pools.get(fallback)
            if fallback in self._entries:
                if pool is not None:
                    chain.append(pool)
            elif fallback.partition("/")[0] not in self.missing_keys:
                # A `provider/model` fallback: a pool of its one attempt.
                attempt = self._adhoc(fallback)
                chain.append(Pool([attempt], "weighted", False, CooldownRule(), self.balancer))
        return tuple(chain)

    def _adhoc(self, name: str) -> Attempt:
        entry = self._entries.get(name)
        if entry is not None:  # configured, but no deployment has its provider's key
            provider = entry.all_deployments()[0].provider
            raise ModelUnavailable(
                f"model {name!r} is not available: its provider {provider!r} has no API key "
                f"(set {self.missing_keys[provider]} where the gateway runs)",
                model=name,
            )
        provider_name, slash, upstream = name.partition("/")
        found = self._providers.get(provider_name)
        if not slash or not upstream or found is None:
            raise UnknownModel(f"unknown model {name!r}", model=name)
        if provider_name in self.missing_keys:
            raise ModelUnavailable(
                f"model {name!r} is not available: its provider {provider_name!r} has no API "
                f"key (set {self.missing_keys[provider_name]} where the gateway runs)",
                model=name,
            )
        return Attempt(name, found, upstream)


def to_chat_request(attempt: Attempt, *, request: StreamRequest) -> ChatRequest:
    """Normalise for adapters: one system prompt, entry params merged under the client's."""
    params = attempt.params
    systems = [request.system] if request.system else []
    messages: list[ChatMessage] = []
    if request.messages is None:
        messages.append(ChatMessage("user", request.prompt or ""))
    else:
        for message in request.messages:
            if message.role == "system":
                systems.append(message.content)
            else:
                messages.append(ChatMessage(message.role, message.content))
    default_system = params.get("system")
    if not systems and isinstance(default_system, str) and default_system:
        systems.append(default_system)  # the entry's system prompt, when the client sent none
    stop = request.stop if request.stop is not None else params.get("stop")
    return ChatRequest(
        model=attempt.upstream_model,
        messages=tuple(messages),
        system="\n\n".join(systems) if systems else None,
        max_tokens=_pick(request.max_tokens, params, "max_tokens"),
        temperature=_pick(request.temperature, params, "temperature"),
        top_p=_pick(request.top_p, params, "top_p"),
        stop=(stop,) if isinstance(stop, str) else tuple(stop) if stop else None,
        extra={k: v for k, v in params.items() if k not in _KNOWN_PARAMS},
    )


def _pick(value: Any, params: Mapping[str, Any], key: str) -> Any:
    return value if value is not None else params.get(key)
