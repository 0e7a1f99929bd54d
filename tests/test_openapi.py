"""The OpenAPI document is true: our error shape on every error, a bearer scheme, stable
operation ids, the stream frames as schemas, and a client generated from it works."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest

from lipika.app import create_app
from lipika.config import Settings
from tests.fixtures.mail import Mailbox

GENERATOR = Path(sys.executable).with_name("openapi-python-client")


@pytest.fixture(scope="module")
def document(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return create_app(Settings(data_dir=tmp_path_factory.mktemp("oa"), _env_file=None)).openapi()


def _operations(document: dict):
    for path, item in document["paths"].items():
        for method, operation in item.items():
            yield path, method, operation


def test_every_error_response_has_the_api_error_shape(document: dict) -> None:
    assert "HTTPValidationError" not in document["components"]["schemas"]
    assert "detail" not in json.dumps(document["components"]["schemas"]["ErrorResponse"])
    for path, method, operation in _operations(document):
        errors = {code: r for code, r in operation["responses"].items() if code[0] in "45"}
        assert {"500", "503"} <= set(errors), (path, method)
        for code, response in errors.items():
            schema = response["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/ErrorResponse"}, (path, method, code)


def test_the_bearer_credential_is_a_security_scheme(document: dict) -> None:
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    open_routes = {
        "/healthz",
        "/readyz",
        "/v1/billing/charge-policy",
        "/v1/payments/sslcommerz/ipn",
        "/v1/payments/sslcommerz/return/{outcome}",
        "/v1/payments/demo/{session_key}",
    }
    for path, method, operation in _operations(document):
        if path.startswith("/v1/auth/") and path not in ("/v1/auth/logout",):
            continue
        if path in open_routes:
            assert "security" not in operation, path
        else:
            assert operation.get("security") == [{"bearer": []}], (path, method)
            assert "401" in operation["responses"]


def test_operation_ids_are_the_endpoint_names(document: dict) -> None:
    ids = [operation["operationId"] for _, _, operation in _operations(document)]
    assert len(ids) == len(set(ids))
    assert {"signup", "chat_completions", "send_message", "list_models"} <= set(ids)


def test_the_stream_frames_are_described(document: dict) -> None:
    schemas = document["components"]["schemas"]
    chat = document["paths"]["/v1/chat/completions"]["post"]["responses"]["200"]["content"]
    assert chat["text/event-stream"]["schema"]["$ref"].endswith("/ChatCompletionChunk")
    assert "choices" in schemas["ChatCompletionChunk"]["properties"]
    thread = document["paths"]["/v1/threads/{thread_id}/messages"]["post"]["responses"]["200"]
    assert thread["content"]["text/event-stream"]["schema"]["$ref"].endswith("/ThreadEvent")
    kinds = {ref["$ref"].rsplit("/", 1)[1] for ref in schemas["ThreadEvent"]["oneOf"]}
    assert kinds == {"TokenEvent", "ToolStartEvent", "ToolEndEvent", "UsageEvent", "DoneEvent", "ErrorEvent"}
    assert schemas["ThreadEvent"]["discriminator"]["propertyName"] == "type"


async def test_a_generated_client_signs_up_and_chats(
    app, client: httpx.AsyncClient, mailbox: Mailbox, tmp_path: Path
) -> None:
    spec = tmp_path / "openapi.json"
    spec.write_text((await client.get("/openapi.json")).text)

    generated = subprocess.run(
        [str(GENERATOR), "generate", "--path", str(spec), "--meta", "none", "--output-path", str(tmp_path / "lipika_sdk")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert (tmp_path / "lipika_sdk" / "client.py").exists(), generated.stdout + generated.stderr
    sys.path.insert(0, str(tmp_path))
    try:
        sdk = importlib.import_module("lipika_sdk")
        from lipika_sdk.api.auth import signup, verify_email  # type: ignore[import-not-found]
        from lipika_sdk.api.chat import chat_completions  # type: ignore[import-not-found]
        from lipika_sdk.models import (  # type: ignore[import-not-found]
            ChatCompletionRequest,
            ChatMessageIn,
            ChatMessageInRole,
            ErrorResponse,
            SignupRequest,
            VerifyEmailRequest,
        )

        transport = {"transport": httpx.ASGITransport(app=app)}
        anonymous = sdk.Client(base_url="http://lipika.test", httpx_args=transport)
        email = f"sdk-{uuid.uuid4().hex[:8]}@example.com"
        accepted = await signup.asyncio_detailed(
            client=anonymous, body=SignupRequest(email=email, password="correct horse battery")
        )
        assert accepted.status_code == 202
        token = await mailbox.token(email)
        login = await verify_email.asyncio(client=anonymous, body=VerifyEmailRequest(token=token))
        authed = sdk.AuthenticatedClient(
            base_url="http://lipika.test", token=login.access_token, httpx_args=transport
        )
        request = ChatCompletionRequest(
            model="demo", messages=[ChatMessageIn(role=ChatMessageInRole.USER, content="Hi")], max_tokens=5
        )
        completion = await chat_completions.asyncio(client=authed, body=request)
        assert completion.choices[0].finish_reason == "length"
        assert completion.usage.completion_tokens == 5
        refused = await chat_completions.asyncio(
            client=authed, body=ChatCompletionRequest(model="no-such-model", messages=request.messages)
        )
        assert isinstance(refused, ErrorResponse) and refused.error.code == "model_not_found"
    finally:
        sys.path.remove(str(tmp_path))
        for name in [m for m in sys.modules if m == "lipika_sdk" or m.startswith("lipika_sdk.")]:
            del sys.modules[name]
