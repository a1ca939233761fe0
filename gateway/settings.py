"""Settings, layered as SPEC §2 says (later wins):

    built-in defaults  →  TOML file  →  GATEWAY_* environment  →  CLI flags

pydantic-settings does the layering: CLI flags arrive as init arguments, the environment uses
the prefix `GATEWAY_` and `__` for nesting, and the TOML file is the last source. Its dicts are
deep-merged, so `GATEWAY_PROVIDERS__OPENAI__BASE_URL` lands inside the file's
`[providers.openai]` table. The file is `--config`, else `$GATEWAY_CONFIG`, else
`config/gateway.toml` if present, else none (built-in defaults: the fake provider only).

The `fake` provider and the `story` model always exist, unless the file defines entries with
those names, which then win. Nothing is read at import time: `load_settings()` is the only
constructor the CLI, the app and the tests use.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from gateway.providers import PROVIDERS, ProviderConfig
from gateway.providers._http import HTTPProviderConfig
from gateway.providers.anthropic import AnthropicConfig
from gateway.providers.bedrock import BedrockConfig
from gateway.providers.fake import FakeConfig, FakeFaults
from gateway.providers.gemini import GeminiConfig

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "CORSConfig",
    "ConfigError",
    "ConfigProblems",
    "DeploymentConfig",
    "KeyConfig",
    "ModelEntry",
    "PriceConfig",
    "ResumeConfig",
    "Settings",
    "TracingConfig",
    "load_settings",
    "resolve_config_path",
    "unknown_environment",
]

DEFAULT_CONFIG_PATH = Path("config/gateway.toml")
KEY_REQUIRED = (AnthropicConfig, GeminiConfig)  # their APIs take no request without a key
ENV_PREFIX = "GATEWAY_"


class ConfigError(Exception):
    """Invalid configuration, with a message naming the source, the key and the problem."""


class ConfigProblems(ValueError):
    """Every cross-reference problem at once, each with the key it is about.

    Raised from the model validator, so pydantic reports it as one error at the top level;
    `_describe` unpacks it again, so that each problem is blamed on its own key and source.
    """

    def __init__(self, problems: list[tuple[tuple[str, ...], str]]) -> None:
        super().__init__("; ".join(f"{'.'.join(loc)}: {message}" for loc, message in problems))
        self.problems = problems


class PriceConfig(BaseModel):
    """`price = { input_per_mtok, output_per_mtok, cached_input_per_mtok }`: currency units per
    million tokens (SPEC §7). Cached input defaults to the input price."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input_per_mtok: float = Field(ge=0)
    output_per_mtok: float = Field(ge=0)
    cached_input_per_mtok: float | None = Field(None, ge=0)


# What X-Gateway-Provider, the logs and the metrics' `deployment` label show: printable ASCII.
DeploymentName = Annotated[str, StringConstraints(pattern=r"^[!-~]{1,64}$")]
Routing = Literal["weighted", "least-busy", "latency"]
TIMEOUTS = ("connect_timeout", "first_token_timeout", "idle_timeout", "total_timeout")


class DeploymentConfig(BaseModel):
    """One deployment of a model entry (SPEC §5.3): a provider and its name for the model.

    Every field past `provider` is optional, so that one more (a price) is one more line.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    provider: str
    model: str | None = None
    name: DeploymentName | None = None
    weight: float = Field(1.0, ge=0)  # 0: never chosen first, only a failover target
    params: dict[str, Any] = Field(default_factory=dict)  # over the entry's params
    price: PriceConfig | None = None  # over the entry's price (SPEC §7)
    # Over the provider's own (a slower region, a reasoning model on a shared account).
    connect_timeout: float | None = Field(None, gt=0)
    first_token_timeout: float | None = Field(None, gt=0)
    idle_timeout: float | None = Field(None, gt=0)
    total_timeout: float | None = Field(None, gt=0)

    @property
    def label(self) -> str:
        return self.name or self.provider

    def timeouts(self) -> dict[str, float]:
        """The time-outs this deployment sets over its provider's."""
        found = {name: getattr(self, name) for name in TIMEOUTS}
        return {name: value for name, value in found.items() if value is not None}


class ModelEntry(BaseModel):
    """A model name: one provider (`provider`, `model`), or several `deployments`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    provider: str | None = None
    model: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    fallbacks: list[str] = Field(default_factory=list)
    price: PriceConfig | None = None
    deployments: list[DeploymentConfig] = Field(default_factory=list)
    routing: Routing = "weighted"
    sticky: bool = True
    cooldown_failures: int = Field(3, ge=1)
    cooldown_window_s: float = Field(60.0, gt=0)
    cooldown_s: float = Field(30.0, ge=0)

    @model_validator(mode="after")
    def _one_form(self) -> ModelEntry:
        if self.deployments and (self.provider is not None or self.model is not None):
            raise ValueError("give `provider` and `model`, or `deployments`, not both")
        if not self.deployments and self.provider is None:
            raise ValueError("give `provider` (with `model`), or `deployments`")
        names = [deployment.label for deployment in self.deployments]
        if twice := sorted({name for name in names if names.count(name) > 1}):
            raise ValueError(
                f"deployments named {', '.join(map(repr, twice))} more than once: give each "
                "a distinct `name` (X-Gateway-Provider and the metrics show it)"
            )
        if self.deployments and not any(each.weight > 0 for each in self.deployments):
            raise ValueError("every deployment has weight 0: give at least one a weight")
        return self

    def all_deployments(self) -> tuple[DeploymentConfig, ...]:
        """The deployments; the `provider`/`model` shorthand is the one-deployment case."""
        if self.deployments:
            return tuple(self.deployments)
        assert self.provider is not None  # checked by _one_form
        return (DeploymentConfig(provider=self.provider, model=self.model),)


class KeyConfig(BaseModel):
    """One gateway API key, known only by its SHA-256 digest (`gateway hash-key`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sha256: Annotated[str, StringConstraints(pattern=r"^[0-9a-fA-F]{64}$")]
    models: list[str] | None = None
    rpm: int | None = Field(None, ge=1)
    tpm: int | None = Field(None, ge=1)
    max_concurrent_streams: int | None = Field(None, ge=1)
    budget: float | None = Field(None, gt=0)  # spend per period, in the prices' currency
    budget_period: Literal["day", "month"] = "month"  # UTC


class CORSConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    allow_origins: list[Annotated[str, StringConstraints(pattern=r"^https?://[^/*\s]+$")]] = Field(
        default_factory=list
    )


class ResumeConfig(BaseModel):
    """`[resume]`: resumable streams (SPEC §4.5)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    orphan_timeout_s: float = Field(15.0, ge=0)
    resume_retry_ms: int = Field(1000, ge=0, le=3_600_000)
    resume_max_bytes: int = Field(4 * 1024 * 1024, ge=1)
    resume_retention_s: float = Field(300.0, ge=0)
    # What ended streams kept for reconnection may hold in this process, all together: past
    # it the oldest are forgotten first (SPEC §6). Counts their events' encoded bytes.
    resume_retained_max_bytes: int = Field(256 * 1024 * 1024, ge=0)


class TracingConfig(BaseModel):
    """`[tracing]` (SPEC §4.4). Set here, a value wins over the standard OTEL_* variable; left
    unset, the variable (or the SDK's default) applies. Tracing is on when an endpoint is set
    here or in OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT, or OTEL_TRACES_EXPORTER is "otlp"."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    endpoint: str | None = None  # the collector's base URL: http://host:4318
    protocol: Literal["http/protobuf"] = "http/protobuf"
    sample_ratio: float | None = Field(None, ge=0, le=1)
    capture_content: bool = False  # prompts and answers in spans


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid"
    )

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    workers: int = Field(1, ge=1, le=256)
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"
    log_format: Literal["text", "json"] = "text"
    default_model: str = "story"
    shutdown_grace_s: float = Field(30.0, ge=0)
    max_body_bytes: int = Field(32 * 1024 * 1024, ge=1)  # agents: long histories, screenshots
    # Silence after which streams whose format has a keep-alive send one (Anthropic's ping).
    sse_keepalive_s: float = Field(15.0, gt=0)
    providers: dict[str, ProviderConfig] = Field(default_factory=dict)
    models: dict[str, ModelEntry] = Field(default_factory=dict)
    keys: dict[str, KeyConfig] = Field(default_factory=dict)
    cors: CORSConfig = Field(default_factory=CORSConfig)
    redis_url: str | None = None
    redis_failure: Literal["closed", "open"] = "closed"
    redis_timeout_s: float = Field(0.25, gt=0)
    lease_ttl_s: float = Field(60.0, gt=1)
    playground: bool = True  # GET /playground (SPEC §4.8); false leaves the route out (404)
    redis_cluster: bool = False  # redis_url names one node of a Redis Cluster
    resume: ResumeConfig = Field(default_factory=ResumeConfig)
    # How long the Responses API's response ids stay continuable (SPEC §4.10).
    responses_retention_s: float = Field(3600.0, ge=0)
    token_secret_env: str | None = None  # the variable holding the EventSource token secret
    tracing: TracingConfig = Field(default_factory=TracingConfig)

    @model_validator(mode="after")
    def _builtins_and_references(self) -> Settings:
        self.providers.setdefault("fake", FakeConfig())
        self.models.setdefault("story", ModelEntry(provider="fake"))
        problems: list[tuple[tuple[str, ...], str]] = []
        for name, entry in self.models.items():
            problems += _entry_problems(self, name, entry)
        if not self.resolvable(self.default_model):
            problems.append(
                (("default_model",), f"{self.default_model!r} is not a configured model")
            )
        for name, key in self.keys.items():
            for model in key.models or ():
                if not self.resolvable(model):
                    loc = ("keys", name, "models")
                    problems.append((loc, f"{model!r} is not a configured model"))
        if self.token_secret_env is not None and len(self.token_secret() or "") < 16:
            problems.append(
                (
                    ("token_secret_env",),
                    f"${self.token_secret_env} must hold at least 16 characters",
                )
            )
        if problems:
            raise ConfigProblems(problems)
        return self

    def secrets(self) -> list[str]:
        """Every configured secret value, for log redaction."""
        keys = [getattr(provider, "api_key", None) for provider in self.providers.values()]
        found = [key.get_secret_value() for key in keys if key is not None]
        found += [
            token
            for provider in self.providers.values()
            if isinstance(provider, BedrockConfig) and (token := provider.bearer_token())
        ]
        token_secret = self.token_secret()
        return [*found, token_secret] if token_secret else found

    def token_secret(self) -> str | None:
        """The EventSource token secret shared by replicas (None: each process makes one)."""
        if self.token_secret_env is None:
            return None
        return os.environ.get(self.token_secret_env) or None

    def missing_keys(self) -> dict[str, str]:
        """Providers that cannot be called for want of a key: provider name -> what to set.

        A named variable that is unset, or no key at all for a provider whose API always
        needs one (an OpenAI-compatible or Ollama server may need none).
        """
        missing = {}
        for name, provider in self.providers.items():
            if not isinstance(provider, HTTPProviderConfig) or provider.api_key is not None:
                continue
            if provider.api_key_env:
                missing[name] = provider.api_key_env
            elif isinstance(provider, KEY_REQUIRED):
                missing[name] = f"api_key_env or api_key in [providers.{name}]"
        return missing

    def resolvable(self, name: str) -> bool:
        provider, slash, _ = name.partition("/")
        return name in self.models or (bool(slash) and provider in self.providers)


def _entry_problems(
    settings: Settings, name: str, entry: ModelEntry
) -> list[tuple[tuple[str, ...], str]]:
    problems: list[tuple[tuple[str, ...], str]] = []
    for index, deployment in enumerate(entry.all_deployments()):
        at = (
            ("models", name)
            if not entry.deployments
            else ("models", name, "deployments", str(index))
        )
        provider = settings.providers.get(deployment.provider)
        if provider is None:
            problems.append(((*at, "provider"), f"no provider named {deployment.provider!r}"))
        if isinstance(provider, FakeConfig):
            try:
                FakeFaults.model_validate({**entry.params, **deployment.params})
            except ValidationError as exc:
                for problem in exc.errors():
                    loc = (*at, "params", *(str(part) for part in problem["loc"]))
                    problems.append((loc, problem["msg"]))
    for fallback in entry.fallbacks:
        if not settings.resolvable(fallback):
            loc = ("models", name, "fallbacks")
            problems.append((loc, f"{fallback!r} is not a configured model"))
    return problems


# Read by the CLI, not settings: `gateway serve` does not warn about them.
NOT_SETTINGS = frozenset({"GATEWAY_CONFIG", "GATEWAY_KEY"})


def unknown_environment() -> list[str]:
    """GATEWAY_* variables that match no setting (a typo would otherwise be silently ignored).

    Only the first level is checked here; below it the settings forbid unknown keys anyway.
    """
    fields = Settings.model_fields
    found = []
    for name in sorted(os.environ):
        if not name.upper().startswith(ENV_PREFIX) or name.upper() in NOT_SETTINGS:
            continue
        top = name[len(ENV_PREFIX) :].split("__")[0].lower()
        if top not in fields:
            found.append(name)
    return found


def resolve_config_path(flag: str | Path | None = None) -> Path | None:
    """`--config`, else `$GATEWAY_CONFIG`, else `config/gateway.toml` if present, else none."""
    named = flag or os.environ.get("GATEWAY_CONFIG")
    if named:
        path = Path(named)
        if not path.is_file():
            raise ConfigError(f"{path}: configuration file not found")
        return path
    return DEFAULT_CONFIG_PATH if DEFAULT_CONFIG_PATH.is_file() else None


def load_settings(config: str | Path | None = None, **overrides: Any) -> Settings:
    """Build the settings from every layer; raise ConfigError with a readable message."""
    path = resolve_config_path(config)
    file_data = _read_toml(path)
    cli = {key: value for key, value in overrides.items() if value is not None}

    class _LayeredSettings(Settings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            toml = TomlConfigSettingsSource(settings_cls, toml_file=path)
            return (init_settings, env_settings, toml)

    try:
        return _LayeredSettings(**cli)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, path, file_data, cli)) from None


def _read_toml(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def _describe(
    exc: ValidationError, path: Path | None, file_data: dict[str, Any], cli: dict[str, Any]
) -> str:
    """One line per problem, every problem, each naming its source, key and what is wrong."""
    lines = []
    for error in exc.errors():
        cause = error.get("ctx", {}).get("error")
        if isinstance(cause, ConfigProblems):
            problems = [(list(loc), message) for loc, message in cause.problems]
        else:
            problems = [(_key_path(error["loc"]), error["msg"].removeprefix("Value error, "))]
        for loc, message in problems:
            key = ".".join(loc) or "(top level)"
            lines.append(f"{_source_of(loc, path, file_data, cli)}: {key}: {message}")
    return "invalid configuration:\n  " + "\n  ".join(lines)


def _key_path(loc: tuple[int | str, ...]) -> list[str]:
    parts = [str(part) for part in loc]
    # A discriminated union puts the `type` tag after the provider's name: drop it.
    if len(parts) >= 3 and parts[0] == "providers" and parts[2] in PROVIDERS:
        del parts[2]
    return parts


def _source_of(
    loc: list[str], path: Path | None, file_data: dict[str, Any], cli: dict[str, Any]
) -> str:
    """Name where a bad value came from: a flag, an environment variable, the file, or
    elsewhere (the layers' order: a flag beats the environment, which beats the file)."""
    if loc and loc[0] in cli:
        return f"command-line option --{loc[0].replace('_', '-')}"
    env_names = {name.upper() for name in os.environ}
    for cut in range(len(loc), 0, -1):
        candidate = ENV_PREFIX + "__".join(loc[:cut]).upper()
        if candidate in env_names:
            return f"environment variable {candidate}"
    if path is not None and loc and loc[0] in file_data:
        return str(path)
    return "settings"
