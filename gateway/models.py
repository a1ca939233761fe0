"""Resolve the `model` a client names into an attempt plan: the entry and its fallbacks."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway.errors import ModelUnavailable, UnknownModel
from gateway.providers import RegisteredProvider
from gateway.providers.base import ChatMessage, ChatRequest
from gateway.schemas import StreamRequest
from gateway.settings import ModelEntry, Settings
from gateway.spend import Price

__all__ = ["Attempt", "ModelTable", "to_chat_request"]

_KNOWN_PARAMS = ("max_tokens", "temperature", "top_p", "stop", "system")


@dataclass(frozen=True, slots=True)
class Attempt:
    """One way to serve a request: which entry, on which provider, as which upstream model."""

    model: str  # the name that served, as in X-Gateway-Model
    provider: RegisteredProvider
    upstream_model: str
    params: Mapping[str, Any] = field(default_factory=dict)
    price: Price | None = None  # read through gateway.spend.price_of


class ModelTable:
    """Every configured name resolved once at start-up; `provider/model` names on demand.

    A provider whose key variable is unset cannot serve anything: a model on it answers 404
    `model_unavailable` at once (naming the variable), and it is skipped as a fallback.
    """

    def __init__(self, settings: Settings, providers: Mapping[str, RegisteredProvider]) -> None:
        self._providers = providers
        self._entries = settings.models
        self.default = settings.default_model
        self.missing_keys = settings.missing_keys()
        self._plans = {name: self._plan(name) for name in settings.models}

    def names(self) -> list[str]:
        return list(self._entries)

    def available(self) -> list[str]:
        """The configured names that can be served (their provider has its key)."""
        return [name for name, plan in self._plans.items() if self._usable(plan[0])]

    def resolve(self, name: str | None) -> tuple[Attempt, ...]:
        name = name or self.default
        plan = self._plans.get(name)
        if plan is None:
            plan = (self._attempt(name),)
        if not self._usable(plan[0]):
            provider = plan[0].provider.name
            raise ModelUnavailable(
                f"model {name!r} is not available: its provider {provider!r} has no API key "
                f"(set {self.missing_keys[provider]} where the gateway runs)",
                model=name,
            )
        return plan

    def _usable(self, attempt: Attempt) -> bool:
        return attempt.provider.name not in self.missing_keys

    def _plan(self, name: str) -> tuple[Attempt, ...]:
        seen = [name, *self._entries[name].fallbacks]
        first, *fallbacks = (self._attempt(each) for each in dict.fromkeys(seen))
        return (first, *(each for each in fallbacks if self._usable(each)))

    def _attempt(self, name: str) -> Attempt:
        entry = self._entries.get(name)
        if entry is not None:
            return _entry_attempt(name, entry, self._providers)
        provider_name, slash, upstream = name.partition("/")
        provider = self._providers.get(provider_name)
        if not slash or not upstream or provider is None:
            raise UnknownModel(f"unknown model {name!r}", model=name)
        return Attempt(name, provider, upstream)


def _entry_attempt(
    name: str, entry: ModelEntry, providers: Mapping[str, RegisteredProvider]
) -> Attempt:
    provider = providers[entry.provider]
    return Attempt(name, provider, entry.model or name, entry.params, Price.of(entry.price))


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
