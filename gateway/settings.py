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
from gateway.providers.fake import FakeConfig, FakeFaults

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "CORSConfig",
    "ConfigError",
    "KeyConfig",
    "ModelEntry",
    "ResumeConfig",
    "Settings",
    "load_settings",
    "resolve_config_path",
]

DEFAULT_CONFIG_PATH = Path("config/gateway.toml")
ENV_PREFIX = "GATEWAY_"


class ConfigError(Exception):
    """Invalid configuration, with a message naming the source, the key and the problem."""


class ModelEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    provider: str
    model: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    fallbacks: list[str] = Field(default_factory=list)


class KeyConfig(BaseModel):
    """One gateway API key, known only by its SHA-256 digest (`gateway hash-key`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sha256: Annotated[str, StringConstraints(pattern=r"^[0-9a-fA-F]{64}$")]
    models: list[str] | None = None
    rpm: int | None = Field(None, ge=1)
    tpm: int | None = Field(None, ge=1)
    max_concurrent_streams: int | None = Field(None, ge=1)


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
    max_body_bytes: int = Field(1024 * 1024, ge=1)
    providers: dict[str, ProviderConfig] = Field(default_factory=dict)
    models: dict[str, ModelEntry] = Field(default_factory=dict)
    keys: dict[str, KeyConfig] = Field(default_factory=dict)
    cors: CORSConfig = Field(default_factory=CORSConfig)
    redis_url: str | None = None
    redis_failure: Literal["closed", "open"] = "closed"
    redis_timeout_s: float = Field(0.25, gt=0)
    lease_ttl_s: float = Field(60.0, gt=1)
    redis_cluster: bool = False  # redis_url names one node of a Redis Cluster
    resume: ResumeConfig = Field(default_factory=ResumeConfig)
    token_secret_env: str | None = None  # the variable holding the EventSource token secret

    @model_validator(mode="after")
    def _builtins_and_references(self) -> Settings:
        self.providers.setdefault("fake", FakeConfig())
        self.models.setdefault("story", ModelEntry(provider="fake"))
        for name, entry in self.models.items():
            _check_entry(self, name, entry)
        if not self.resolvable(self.default_model):
            raise ValueError(f"default_model {self.default_model!r} is not a configured model")
        for name, key in self.keys.items():
            for model in key.models or ():
                if not self.resolvable(model):
                    raise ValueError(f"keys.{name}.models: {model!r} is not a configured model")
        if self.token_secret_env is not None and len(self.token_secret() or "") < 16:
            raise ValueError(
                f"token_secret_env: ${self.token_secret_env} must hold at least 16 characters"
            )
        return self

    def secrets(self) -> list[str]:
        """Every configured secret value, for log redaction."""
        keys = [getattr(provider, "api_key", None) for provider in self.providers.values()]
        found = [key.get_secret_value() for key in keys if key is not None]
        token_secret = self.token_secret()
        return [*found, token_secret] if token_secret else found

    def token_secret(self) -> str | None:
        """The EventSource token secret shared by replicas (None: each process makes one)."""
        if self.token_secret_env is None:
            return None
        return os.environ.get(self.token_secret_env) or None

    def resolvable(self, name: str) -> bool:
        provider, slash, _ = name.partition("/")
        return name in self.models or (bool(slash) and provider in self.providers)


def _check_entry(settings: Settings, name: str, entry: ModelEntry) -> None:
    provider = settings.providers.get(entry.provider)
    if provider is None:
        raise ValueError(f"models.{name}.provider: no provider named {entry.provider!r}")
    if isinstance(provider, FakeConfig):
        try:
            FakeFaults.model_validate(entry.params)
        except ValidationError as exc:
            problem = exc.errors()[0]
            key = ".".join(str(part) for part in problem["loc"])
            raise ValueError(f"models.{name}.params.{key}: {problem['msg']}") from None
    for fallback in entry.fallbacks:
        if not settings.resolvable(fallback):
            raise ValueError(f"models.{name}.fallbacks: {fallback!r} is not a configured model")


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
        raise ConfigError(_describe(exc, path, file_data)) from None


def _read_toml(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def _describe(exc: ValidationError, path: Path | None, file_data: dict[str, Any]) -> str:
    lines = []
    for error in exc.errors():
        loc = _key_path(error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        key = ".".join(loc) or "(top level)"
        lines.append(f"{_source_of(loc, path, file_data)}: {key}: {message}")
    return "invalid configuration:\n  " + "\n  ".join(lines)


def _key_path(loc: tuple[int | str, ...]) -> list[str]:
    parts = [str(part) for part in loc]
    # A discriminated union puts the `type` tag after the provider's name: drop it.
    if len(parts) >= 3 and parts[0] == "providers" and parts[2] in PROVIDERS:
        del parts[2]
    return parts


def _source_of(loc: list[str], path: Path | None, file_data: dict[str, Any]) -> str:
    """Name where a bad value came from: an environment variable, the file, or elsewhere."""
    env_names = {name.upper() for name in os.environ}
    for cut in range(len(loc), 0, -1):
        candidate = ENV_PREFIX + "__".join(loc[:cut]).upper()
        if candidate in env_names:
            return f"environment variable {candidate}"
    if path is not None and (not loc or loc[0] in file_data):
        return str(path)
    return "settings"
