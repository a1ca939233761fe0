"""What a new user meets first (issue 15): the model list, the docs, a missing provider key.

The official OpenAI SDK is the client where an SDK user would be one.
"""

from __future__ import annotations

import httpx
import openai
import pytest

from gateway.app import create_app
from gateway.auth import hash_key
from tests.conftest import FAST_FAKE, settings_from
from tests.e2e.conftest import RequestsLogged
from tests.e2e.servers import serve

pytestmark = pytest.mark.e2e

KEY, NARROW = "gw-first-contact-key-1", "gw-first-contact-key-2"
CONFIG = (
    FAST_FAKE
    + "[providers.openai]\ntype='openai'\napi_key_env='OPENAI_API_KEY'\n"
    + "[models.gpt]\nprovider='openai'\nmodel='gpt-4o-mini'\nfallbacks=['story']\n"
    + "[models.other]\nprovider='fake'\nfallbacks=['gpt']\n"
)
KEYS = (
    f"[keys.all]\nsha256='{hash_key(KEY)}'\n"
    f"[keys.narrow]\nsha256='{hash_key(NARROW)}'\nmodels=['story', 'gpt']\n"
)


def sdk(url: str, key: str = "unused", retries: int = 0) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=key, max_retries=retries)


async def test_models_list_only_what_the_caller_can_use() -> None:
    async with serve(create_app(settings_from(CONFIG + KEYS))) as url:
        async with sdk(url, KEY) as wide, sdk(url, NARROW) as narrow:
            everything = [model.id async for model in wide.models.list()]
            allowed = [model.id async for model in narrow.models.list()]
            story = await narrow.models.retrieve("story")
            with pytest.raises(openai.NotFoundError) as hidden:
                await narrow.models.retrieve("other")  # outside the key's list
            with pytest.raises(openai.NotFoundError) as keyless:
                await wide.models.retrieve("gpt")
            with pytest.raises(openai.NotFoundError) as unknown:
                await wide.models.retrieve("nope")
            addressed = await wide.models.retrieve("fake/anything")
    # `gpt`'s provider has no key (OPENAI_API_KEY is unset): it is not offered.
    assert sorted(everything) == ["other", "story"]
    assert allowed == ["story"]
    assert (story.id, story.owned_by, story.object) == ("story", "fake", "model")
    assert hidden.value.code == "unknown_model"
    assert keyless.value.code == "model_unavailable"
    assert unknown.value.code == "unknown_model"
    assert (addressed.id, addressed.owned_by) == ("fake/anything", "fake")


async def test_models_list_needs_a_key_when_keys_are_configured() -> None:
    async with serve(create_app(settings_from(CONFIG + KEYS))) as url, sdk(url) as client:
        with pytest.raises(openai.AuthenticationError):
            await client.models.retrieve("story")


async def test_a_provider_without_its_key_is_a_404_the_sdk_does_not_retry() -> None:
    with RequestsLogged() as logged:
        async with serve(create_app(settings_from(CONFIG))) as url, sdk(url, retries=2) as client:
            with pytest.raises(openai.NotFoundError) as caught:
                await client.chat.completions.create(
                    model="gpt", messages=[{"role": "user", "content": "hi"}]
                )
            # A model whose fallback lacks its key skips it rather than failing on it.
            served = await client.chat.completions.create(
                model="other", messages=[{"role": "user", "content": "hi"}]
            )
            async with httpx.AsyncClient(base_url=url) as http:
                direct = await http.post("/stream", json={"prompt": "x", "model": "openai/gpt-4o"})
        await logged.reach(3)
    assert caught.value.code == "model_unavailable"
    assert "OPENAI_API_KEY" in caught.value.message
    assert logged.count == 3  # one request each: the SDK did not retry the 404
    assert served.model == "other"
    assert direct.status_code == 404
    assert direct.json()["error"]["type"] == "model_unavailable"


async def test_docs_need_the_key_like_every_other_route() -> None:
    async with serve(create_app(settings_from(CONFIG + KEYS))) as url:
        async with httpx.AsyncClient(base_url=url) as http:
            without = [(await http.get(path)).status_code for path in DOC_PATHS]
            with_key = [
                await http.get(path, headers={"Authorization": f"Bearer {KEY}"})
                for path in DOC_PATHS
            ]
    assert without == [401, 401, 401]
    assert [response.status_code for response in with_key] == [200, 200, 200]
    assert "swagger-ui" in with_key[0].text
    assert with_key[2].json()["info"]["title"] == "LLM token relay gateway"


DOC_PATHS = ("/docs", "/redoc", "/openapi.json")


async def test_docs_can_try_get_stream_with_its_query_parameters() -> None:
    async with serve(create_app(settings_from(FAST_FAKE))) as url:
        async with httpx.AsyncClient(base_url=url) as http:
            schema = (await http.get("/openapi.json")).json()
            docs = await http.get("/docs")
            # What "Try it out" sends for GET /stream with a prompt filled in.
            tried = await http.get("/stream", params={"prompt": "hi", "format": "text"})
    parameters = {p["name"]: p for p in schema["paths"]["/stream"]["get"]["parameters"]}
    assert {"prompt", "model", "system", "max_tokens", "format"} <= set(parameters)
    assert "messages" not in parameters
    assert all(p["in"] == "query" for p in parameters.values())
    assert parameters["format"]["schema"]["enum"] == ["text", "sse", "ndjson"]
    assert docs.status_code == 200
    assert tried.status_code == 200


FAULTS = (
    FAST_FAKE
    + "[models.busy]\nprovider='fake'\nparams={fail_status=429, retry_after_s=7}\n"
    + "[models.down]\nprovider='fake'\nparams={fail_status=503, retry_after_s=3}\n"
)


async def test_fake_provider_honours_max_tokens_with_finish_reason_length() -> None:
    async with serve(create_app(settings_from(FAULTS))) as url, sdk(url) as client:
        capped = await client.chat.completions.create(
            model="story", messages=[{"role": "user", "content": "hi"}], max_tokens=5
        )
        async with httpx.AsyncClient(base_url=url) as http:
            sse = await http.post("/stream?format=sse", json={"prompt": "hi", "max_tokens": 3})
    assert capped.choices[0].finish_reason == "length"
    assert capped.choices[0].message.content == "Rick: (stumbles in drunkenly, and "
    assert capped.usage is not None and capped.usage.completion_tokens == 5
    assert sse.text.count('\ndata: "') + sse.text.startswith('data: "') == 3
    assert '"finish_reason":"length"' in sse.text


async def test_fake_provider_scripted_failures_carry_retry_after() -> None:
    async with serve(create_app(settings_from(FAULTS))) as url:
        async with httpx.AsyncClient(base_url=url) as http:
            busy = await http.post("/stream", json={"prompt": "hi", "model": "busy"})
            down = await http.post("/stream", json={"prompt": "hi", "model": "down"})
    assert busy.status_code == 429
    assert busy.json()["error"]["type"] == "upstream_rate_limited"
    assert busy.headers["retry-after"] == "7"
    assert down.status_code == 502
    assert down.headers["retry-after"] == "3"
