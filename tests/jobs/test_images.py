"""`POST /v1/images/generations`: the official `openai` SDK's `images.generate` against the
platform (a base URL and a key), on the demo image model and on `gpt-image-2` through the real
adapter against a fake OpenAI Images server, billed from the response's token usage."""

from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterator

import openai
import pytest

from lipika.billing.pricebook import cost_of
from lipika.providers.gemini_images import GeminiImageProvider
from lipika.providers.openai_images import OpenAIImageProvider, XAIImageProvider
from tests.fixtures.fakes.gemini_images import JPEG, GeminiImagesFake
from tests.fixtures.fakes.openai_images import JPEG as XAI_JPEG
from tests.fixtures.fakes.openai_images import PNG, ImagesFake
from tests.fixtures.live import serve
from tests.jobs.conftest import Jobs

pytestmark = pytest.mark.usefixtures("backend")

CREDIT = 1_000_000


@pytest.fixture
async def live_url(app) -> AsyncIterator[str]:
    async with serve(app) as url:
        yield url


@pytest.fixture
async def images_fake(jobs: Jobs, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[ImagesFake]:
    fake = ImagesFake("sk-fake-images-0123456789")
    await fake.start()
    provider = OpenAIImageProvider(fake.api_key, fake.base_url, timeout=5, max_retries=0)
    monkeypatch.setitem(jobs.runner.kinds["image"].providers, "openai", provider)
    try:
        yield fake
    finally:
        await provider.aclose()
        await fake.stop()


async def _sdk_for(jobs: Jobs, live_url: str, headers: dict[str, str]) -> openai.AsyncOpenAI:
    key = await jobs.client.post("/v1/api-keys", json={"name": "sdk"}, headers=headers)
    assert key.status_code == 201, key.text
    return openai.AsyncOpenAI(base_url=f"{live_url}/v1", api_key=key.json()["key"], max_retries=0)


async def test_the_sdk_generates_demo_images(jobs: Jobs, live_url: str, signup, books) -> None:
    me = await signup("images")
    workspace = uuid.UUID(me.personal_workspace_id)
    before = await books.state(workspace)
    async with await _sdk_for(jobs, live_url, me.headers) as sdk:
        result = await sdk.images.generate(model="demo", prompt="a red bicycle", n=2)
    assert len(result.data) == 2
    first = base64.b64decode(result.data[0].b64_json)
    assert first.startswith(b"<svg") and b"a red bicycle" in first
    assert result.output_format == "svg"
    assert before.balance - (await books.state(workspace)).balance == 1 * CREDIT  # 2 x 0.5
    listed = (await jobs.client.get("/v1/jobs?kind=image", headers=me.headers)).json()["data"]
    assert len(listed) == 1 and listed[0]["status"] == "succeeded"
    await books.assert_balanced()


async def test_gpt_image_2_is_billed_from_the_reported_tokens(
    jobs: Jobs, live_url: str, images_fake: ImagesFake, signup, books
) -> None:
    me = await signup("gptimage")
    workspace = uuid.UUID(me.personal_workspace_id)
    await books.assign_plan(workspace, "pro")
    before = await books.state(workspace)
    prompt = "a lighthouse in a storm, oil painting"
    async with await _sdk_for(jobs, live_url, me.headers) as sdk:
        result = await sdk.images.generate(
            model="gpt-image-2", prompt=prompt, n=1, size="1536x1024", quality="high"
        )
    assert base64.b64decode(result.data[0].b64_json).startswith(PNG)
    reported = ImagesFake.usage_for(prompt, 1, "1536x1024", "high")
    assert result.usage.output_tokens == reported["output_tokens"]
    assert result.usage.input_tokens == reported["input_tokens"]
    rates = books.meter.price_book.get("image.gpt-image-2").rates
    expected = cost_of(
        rates,
        {
            "text_input_tokens": reported["input_tokens"],
            "image_output_tokens": reported["output_tokens"],
        },
    )
    assert expected > 0
    assert before.balance - (await books.state(workspace)).balance == expected
    assert (
        images_fake.calls[0]["model"] == "gpt-image-2" and images_fake.calls[0]["quality"] == "high"
    )
    [hold] = await books.holds(workspace)
    assert hold.amount >= expected and hold.captured == expected
    await books.assert_balanced()


@pytest.mark.parametrize(
    ("directive", "status", "code"),
    [
        ("[[img reject=1]]", 400, "provider_rejected_request"),
        ("[[img fail=1]]", 502, "provider_error"),
    ],
)
async def test_image_failures_are_free_and_typed(
    jobs: Jobs,
    live_url: str,
    images_fake: ImagesFake,
    signup,
    books,
    directive: str,
    status: int,
    code: str,
) -> None:
    me = await signup("imgfail")
    workspace = uuid.UUID(me.personal_workspace_id)
    await books.assign_plan(workspace, "pro")
    before = await books.state(workspace)
    async with await _sdk_for(jobs, live_url, me.headers) as sdk:
        with pytest.raises(openai.APIStatusError) as failed:
            await sdk.images.generate(model="gpt-image-2", prompt=f"something {directive}")
    assert failed.value.status_code == status
    assert failed.value.body["code"] == code
    after = await books.state(workspace)
    assert after.balance == before.balance and after.held == 0
    await books.assert_balanced()


async def test_an_unknown_image_model_is_a_clear_400(jobs: Jobs, signup) -> None:
    me = await signup("imgbad")
    response = await jobs.client.post(
        "/v1/images/generations", json={"prompt": "x", "model": "dall-e-3"}, headers=me.headers
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "model_not_found"


@pytest.fixture
async def gemini_images(
    jobs: Jobs, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[GeminiImagesFake]:
    fake = GeminiImagesFake("AIzaFakeGeminiImages0123")
    await fake.start()
    provider = GeminiImageProvider(fake.api_key, fake.base_url, timeout=5, max_retries=0)
    monkeypatch.setitem(jobs.runner.kinds["image"].providers, "gemini", provider)
    try:
        yield fake
    finally:
        await provider.aclose()
        await fake.stop()


async def test_gemini_images_are_one_call_each_and_charged_per_image(
    jobs: Jobs, gemini_images: GeminiImagesFake, signup, books
) -> None:
    me = await signup("gemimg")
    workspace = uuid.UUID(me.personal_workspace_id)
    await books.assign_plan(workspace, "pro")
    before = await books.state(workspace)
    response = await jobs.client.post(
        "/v1/images/generations",
        json={"model": "gemini-3-pro-image", "prompt": "a red bicycle", "n": 3},
        headers=me.headers,
    )
    assert response.status_code == 200, response.text
    images = [base64.b64decode(d["b64_json"]) for d in response.json()["data"]]
    assert len(images) == 3 and all(i.startswith(JPEG) for i in images)
    assert len(gemini_images.calls) == 3  # no sample count on the wire: one call per image
    assert gemini_images.calls[0]["generationConfig"]["responseModalities"] == ["IMAGE"]
    assert before.balance - (await books.state(workspace)).balance == 3 * 13_400_000
    await books.assert_balanced()


@pytest.mark.parametrize(
    ("directive", "status"), [("[[gimg block=1]]", 400), ("[[gimg fail=1]]", 502)]
)
async def test_gemini_image_refusals_and_failures_are_free(
    jobs: Jobs, gemini_images: GeminiImagesFake, signup, books, directive: str, status: int
) -> None:
    me = await signup("gemimgfail")
    workspace = uuid.UUID(me.personal_workspace_id)
    await books.assign_plan(workspace, "pro")
    before = await books.state(workspace)
    response = await jobs.client.post(
        "/v1/images/generations",
        json={"model": "gemini-2.5-flash-image", "prompt": f"x {directive}"},
        headers=me.headers,
    )
    assert response.status_code == status, response.text
    after = await books.state(workspace)
    assert after.balance == before.balance and after.held == 0
    await books.assert_balanced()


async def test_grok_images_are_charged_per_image(jobs: Jobs, signup, books, monkeypatch) -> None:
    fake = ImagesFake("xai-fake-images-0123", flavour="xai")
    await fake.start()
    provider = XAIImageProvider(fake.api_key, fake.base_url, timeout=5, max_retries=0)
    monkeypatch.setitem(jobs.runner.kinds["image"].providers, "xai", provider)
    try:
        me = await signup("grokimg")
        workspace = uuid.UUID(me.personal_workspace_id)
        await books.assign_plan(workspace, "pro")
        before = await books.state(workspace)
        response = await jobs.client.post(
            "/v1/images/generations",
            json={"model": "grok-imagine-image", "prompt": "a fox", "n": 2},
            headers=me.headers,
        )
        assert response.status_code == 200, response.text
        assert all(
            base64.b64decode(d["b64_json"]).startswith(XAI_JPEG) for d in response.json()["data"]
        )
        assert fake.calls[0]["response_format"] == "b64_json"
        assert before.balance - (await books.state(workspace)).balance == 2 * 2 * CREDIT
        await books.assert_balanced()
    finally:
        await provider.aclose()
        await fake.stop()
