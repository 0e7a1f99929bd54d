"""The dependency that makes a route idempotent: one line on the route,

    @router.post("/v1/api-keys", dependencies=[Idempotent])

or, for a route that needs the key itself (chat passes it on to its hold),
`key: IdempotencyKeyDep`; `IdempotentInPath` on a route whose workspace is in its path. The route class (kit/routing.py) tells the claim how the request
ended, so the answer is stored or the key released."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request

from lipika.auth.dependencies import CurrentMember, PathMember, Principal
from lipika.idempotency.service import IdempotencyStore, fingerprint
from lipika.kit.routing import add_response_hook


def scope_of(member: Principal) -> str:
    """Whose keys these are: the workspace and the API key, or the user."""
    who = f"k:{member.api_key_id}" if member.api_key_id else f"u:{member.user_id}"
    return f"{member.workspace_id}:{who}"


KeyHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=200,
        description="Retries with the same key and request get the first answer back "
        "(kept 24 hours); see the README.",
    ),
]


async def idempotency_key(request: Request, me: CurrentMember, key: KeyHeader = None) -> str | None:
    """Claims the request's key for the caller in the current workspace (see the module)."""
    return await _claim(request, me, key)


async def idempotency_key_in_path(
    request: Request, me: PathMember, key: KeyHeader = None
) -> str | None:
    """The same, for the caller in the workspace named in the path."""
    return await _claim(request, me, key)


async def _claim(request: Request, me: Principal, key: str | None) -> str | None:
    if key is None:
        return None
    store: IdempotencyStore = request.state.idempotency
    body = await request.body()
    claim = await store.claim(
        scope_of(me),
        key,
        fingerprint(request.method, request.url.path, request.url.query, body),
    )
    add_response_hook(request, claim)
    return key


IdempotencyKeyDep = Annotated[str | None, Depends(idempotency_key)]
Idempotent = Depends(idempotency_key)
IdempotentInPath = Depends(idempotency_key_in_path)
