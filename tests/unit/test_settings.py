"""Settings layering: defaults → TOML file → GATEWAY_* environment → CLI flags."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.cli import main
from gateway.providers.base import ProviderSettings
from gateway.providers.fake import FakeConfig
from gateway.providers.openai import OpenAIConfig
from gateway.settings import ConfigError, load_settings
from tests.conftest import CANARY_KEY, write_config


def test_defaults_are_the_fake_provider_only() -> None:
    settings = load_settings()
    assert (settings.host, settings.port, settings.default_model) == ("127.0.0.1", 8000, "story")
    assert list(settings.providers) == ["fake"]
    assert settings.models["story"].provider == "fake"
    fake = settings.providers["fake"]
    assert isinstance(fake, FakeConfig)
    assert (fake.chunk_delay_ms, fake.chunking) == (30, "word")


def test_file_beats_defaults(tmp_path: Path) -> None:
    path = write_config(tmp_path, "port = 9001\n[providers.fake]\ntype='fake'\nchunking='line'\n")
    settings = load_settings(path)
    assert settings.port == 9001
    assert settings.providers["fake"].chunking == "line"  # type: ignore[union-attr]


def test_env_beats_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_config(tmp_path, "port = 9001\n")
    monkeypatch.setenv("GATEWAY_PORT", "9002")
    assert load_settings(path).port == 9002


def test_cli_beats_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_PORT", "9002")
    assert load_settings(port=9003).port == 9003


def test_env_nested_value_merges_into_the_file_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_config(tmp_path, '[providers.openai]\ntype = "openai"\napi_key_env = "K"\n')
    monkeypatch.setenv("GATEWAY_PROVIDERS__OPENAI__BASE_URL", "http://localhost:8080/v1")
    provider = load_settings(path).providers["openai"]
    assert isinstance(provider, OpenAIConfig)
    assert provider.base_url == "http://localhost:8080/v1"
    assert provider.api_key_env == "K"


def test_openai_providers_speak_chat_unless_they_say_responses(tmp_path: Path) -> None:
    toml = "[providers.c]\ntype = 'openai'\n[providers.r]\ntype = 'openai'\napi = 'responses'\n"
    providers = load_settings(write_config(tmp_path, toml)).providers
    assert [getattr(providers[name], "api", None) for name in "cr"] == ["chat", "responses"]


def test_config_path_from_env_and_from_default_location(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_config(tmp_path, "port = 9101\n")
    monkeypatch.setenv("GATEWAY_CONFIG", str(path))
    assert load_settings().port == 9101
    monkeypatch.delenv("GATEWAY_CONFIG")
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "gateway.toml").write_text("port = 9102\n")
    assert load_settings().port == 9102


def test_missing_explicit_file_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="nope.toml: configuration file not found"):
        load_settings(tmp_path / "nope.toml")
    monkeypatch.setenv("GATEWAY_CONFIG", str(tmp_path / "gone.toml"))
    with pytest.raises(ConfigError, match="gone.toml: configuration file not found"):
        load_settings()


def test_typo_fails_naming_file_key_and_problem(tmp_path: Path) -> None:
    path = write_config(tmp_path, "[providers.fake]\ntype = 'fake'\nchunk_dealy_ms = 5\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert f"{path}: providers.fake.chunk_dealy_ms: Extra inputs are not permitted" in str(
        caught.value
    )


def test_bad_env_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_PORT", "eighty")
    with pytest.raises(ConfigError, match="environment variable GATEWAY_PORT: port: "):
        load_settings()


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    path = write_config(tmp_path, "port = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(path)


def test_builtins_exist_unless_redefined(tmp_path: Path) -> None:
    path = write_config(tmp_path, "[models.other]\nprovider = 'fake'\n")
    settings = load_settings(path)
    assert set(settings.models) == {"other", "story"}
    path = write_config(
        tmp_path,
        "[providers.fake]\ntype='fake'\nchunking='char'\n[models.story]\nprovider='fake'\n"
        "params = { fail_status = 503 }\n",
    )
    settings = load_settings(path)
    assert settings.providers["fake"].chunking == "char"  # type: ignore[union-attr]
    assert settings.models["story"].params == {"fail_status": 503}


@pytest.mark.parametrize(
    ("toml", "problem"),
    [
        ("[models.x]\nprovider = 'nope'\n", "models.x.provider: no provider named 'nope'"),
        ("[models.x]\nprovider = 'fake'\nfallbacks = ['ghost']\n", "'ghost' is not a configured"),
        ("default_model = 'ghost'\n", "gateway.toml: default_model: 'ghost' is not a configured"),
        ("[providers.o]\ntype = 'openai'\nbase_url = 'ftp://x'\n", "must be an http"),
        ("[providers.o]\ntype = 'nosuch'\n", "providers.o: Input tag 'nosuch'"),
        ("[models.x]\nprovider='fake'\nparams={fail_status=200}\n", "params.fail_status"),
        ("[providers.fake]\ntype='fake'\nscript='missing.txt'\n", "does not exist"),
        (
            "[providers.o]\ntype = 'openai'\napi = 'assistants'\n",
            "providers.o.api: Input should be 'chat' or 'responses'",
        ),
    ],
)
def test_invalid_references_fail_at_start_up(tmp_path: Path, toml: str, problem: str) -> None:
    with pytest.raises(ConfigError, match="invalid configuration") as caught:
        load_settings(write_config(tmp_path, toml))
    assert problem in str(caught.value)


def test_api_key_is_resolved_once_from_the_named_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MY_OPENAI_API_KEY", CANARY_KEY)
    path = write_config(tmp_path, "[providers.o]\ntype='openai'\napi_key_env='MY_OPENAI_API_KEY'\n")
    provider = load_settings(path).providers["o"]
    assert isinstance(provider, OpenAIConfig)
    assert provider.api_key is not None
    assert provider.api_key.get_secret_value() == CANARY_KEY
    assert CANARY_KEY not in repr(provider)


def test_provider_model_addresses_resolve_for_fallbacks(tmp_path: Path) -> None:
    path = write_config(tmp_path, "[models.x]\nprovider='fake'\nfallbacks=['fake/other']\n")
    assert load_settings(path).models["x"].fallbacks == ["fake/other"]


def test_check_config_masks_secrets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", CANARY_KEY)
    path = write_config(
        tmp_path,
        "[providers.openai]\ntype='openai'\napi_key_env='OPENAI_API_KEY'\n"
        "[providers.a]\ntype='anthropic'\napi_key='sk-ant-inline-secret-123'\n",
    )
    with pytest.raises(SystemExit) as exited:
        main(["check-config", "--config", str(path)])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert CANARY_KEY not in out and "sk-ant-inline-secret-123" not in out
    assert '"api_key": "**********"' in out
    assert '"story"' in out


def test_check_config_error_exits_1_with_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(tmp_path, "prot = 1\n")
    with pytest.raises(SystemExit) as exited:
        main(["check-config", "--config", str(path)])
    assert exited.value.code == 1
    assert f"{path}: prot: Extra inputs are not permitted" in capsys.readouterr().err


def test_providers_that_cannot_be_called_for_want_of_a_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SET_KEY", "sk-set-0123456789")
    path = write_config(
        tmp_path,
        "[providers.named_unset]\ntype='openai'\napi_key_env='UNSET_KEY'\n"
        "[providers.named_set]\ntype='anthropic'\napi_key_env='SET_KEY'\n"
        "[providers.keyless_local]\ntype='openai'\nbase_url='http://127.0.0.1:8080/v1'\n"
        "[providers.keyless_ollama]\ntype='ollama'\n"
        "[providers.keyless_gemini]\ntype='gemini'\n",
    )
    assert load_settings(path).missing_keys() == {
        "named_unset": "UNSET_KEY",
        "keyless_gemini": "api_key_env or api_key in [providers.keyless_gemini]",
    }


def test_resume_settings_layer_and_the_token_secret_must_exist(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_config(
        tmp_path, "token_secret_env = 'GW_SECRET'\n[resume]\norphan_timeout_s = 2\n"
    )
    with pytest.raises(ConfigError, match=r"token_secret_env: \$GW_SECRET must hold at least 16"):
        load_settings(path)
    monkeypatch.setenv("GW_SECRET", "sixteen-chars-ok")
    monkeypatch.setenv("GATEWAY_RESUME__RESUME_RETRY_MS", "250")
    settings = load_settings(path)
    assert (settings.resume.orphan_timeout_s, settings.resume.resume_retry_ms) == (2, 250)
    assert settings.resume.enabled and settings.resume.resume_max_bytes == 4 * 1024 * 1024
    assert "sixteen-chars-ok" in settings.secrets()  # redacted from every log line
    bad = write_config(tmp_path, "[resume]\nresume_max_bytes = 0\n")
    with pytest.raises(ConfigError, match="resume.resume_max_bytes"):
        load_settings(bad)


def test_defaults_fit_agents_and_reasoning_models() -> None:
    # SPEC §6 and the error table: agents send long histories and screenshots, and reasoning
    # models think for minutes before their first visible part.
    settings = load_settings()
    assert settings.max_body_bytes == 32 * 1024 * 1024
    assert ProviderSettings().first_token_timeout == 300
