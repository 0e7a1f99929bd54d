"""Verified identities: sign-up and reset that reveal nothing, single-use expiring links, the
password policy, and free credits per verified person (issue 10, findings 1, 3 and 9)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select, update

from lipika.auth.models import EmailToken, User
from lipika.auth.passwords import weakness
from lipika.billing.models import EntryKind
from lipika.billing.repository import WalletState
from lipika.config import Settings
from lipika.db import utcnow
from tests.fixtures.accounts import personal_workspace, unverified_session
from tests.fixtures.ledger import Books
from tests.fixtures.mail import Mailbox

FREE_MONTHLY = 100_000_000
PASSWORD = "correct horse battery"
ONE_MESSAGE = "email or password is incorrect, or the address is not verified yet"


async def sign_up(client: httpx.AsyncClient, email: str, password: str = PASSWORD) -> httpx.Response:
    return await client.post("/v1/auth/signup", json={"email": email, "password": password})


def error_of(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code, error
    return error


# -- sign-up never tells whether an address is registered ----------------------------------------


async def test_sign_up_answers_the_same_for_a_new_and_a_registered_address(
    client: httpx.AsyncClient, signup, mailbox: Mailbox, books: Books
) -> None:
    registered = await signup("known")
    new = f"new-{uuid.uuid4().hex[:8]}@example.com"
    unverified = f"pending-{uuid.uuid4().hex[:8]}@example.com"
    assert (await sign_up(client, unverified)).status_code == 202

    answers = [
        await sign_up(client, new),
        await sign_up(client, registered.email, "another long password"),
        await sign_up(client, unverified, "another long password"),
    ]
    assert {(a.status_code, a.text) for a in answers} == {(202, '{"status":"verification_sent"}')}
    for answer in answers:
        assert "token" not in answer.text and "access" not in answer.text

    # What differs is only the mail: a link to verify for the new address, ...
    [welcome] = await mailbox.to(new)
    assert welcome.link and welcome.link.startswith("http://localhost:3000/verify-email?token=")
    # ... and for a registered one, a note saying so, with a reset link (verified or not).
    for address in (registered.email, unverified):
        note = await mailbox.last_to(address)
        assert note.subject == "You already have an account"
        assert note.link and note.link.startswith("http://localhost:3000/reset-password?token=")
    # The second sign-up changed nothing: the old password still logs in.
    login = await client.post(
        "/v1/auth/login", json={"email": registered.email, "password": registered.password}
    )
    assert login.status_code == 200, login.text


async def test_sign_up_answers_identical_bodies_to_an_upper_case_duplicate(
    client: httpx.AsyncClient, signup
) -> None:
    account = await signup()
    again = await sign_up(client, account.email.upper())
    assert (again.status_code, again.json()) == (202, {"status": "verification_sent"})


async def test_concurrent_sign_ups_for_one_address_make_one_account(
    client: httpx.AsyncClient, mailbox: Mailbox, books: Books
) -> None:
    email = f"race-{uuid.uuid4().hex[:8]}@example.com"
    answers = await asyncio.gather(*(sign_up(client, email) for _ in range(4)))
    assert {(a.status_code, a.text) for a in answers} == {(202, '{"status":"verification_sent"}')}
    async with books.sessionmaker() as session:
        users = (await session.scalars(select(User).where(User.email == email))).all()
    assert len(users) == 1
    assert (await books.state(await personal_workspace(books, email))).balance == 0
    assert any(m.subject == "Confirm your e-mail address" for m in await mailbox.to(email))


# -- verification ---------------------------------------------------------------------------------


async def test_an_unverified_account_cannot_log_in_and_has_no_credits(
    client: httpx.AsyncClient, mailbox: Mailbox, books: Books
) -> None:
    email = f"fresh-{uuid.uuid4().hex[:8]}@example.com"
    assert (await sign_up(client, email)).status_code == 202
    workspace_id = await personal_workspace(books, email)
    assert await books.state(workspace_id) == WalletState(0, 0)

    # The right password is refused exactly like a wrong one (and mails a fresh link).
    right = await client.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    wrong = await client.post("/v1/auth/login", json={"email": email, "password": "wrong one!"})
    unknown = await client.post(
        "/v1/auth/login", json={"email": "nobody@example.com", "password": PASSWORD}
    )
    for response in (right, wrong, unknown):
        assert error_of(response, 401, "invalid_credentials")["message"] == ONE_MESSAGE
    assert right.text == wrong.text == unknown.text
    assert len(await mailbox.to(email)) == 2  # the sign-up's link and the login's

    # The link logs in and grants the free plan's credits, once.
    verified = await client.post(
        "/v1/auth/verify-email", json={"token": await mailbox.token(email)}
    )
    assert verified.status_code == 200, verified.text
    assert verified.json()["user"]["email_verified_at"] is not None
    me = await client.get(
        "/v1/me", headers={"Authorization": f"Bearer {verified.json()['access_token']}"}
    )
    assert me.status_code == 200
    assert await books.state(workspace_id) == WalletState(FREE_MONTHLY, 0)
    login = await client.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert login.status_code == 200, login.text
    await books.assert_balanced()


async def test_a_verification_link_works_once_and_older_ones_die_with_it(
    client: httpx.AsyncClient, mailbox: Mailbox, books: Books
) -> None:
    email = f"once-{uuid.uuid4().hex[:8]}@example.com"
    await sign_up(client, email)
    first = await mailbox.token(email)
    resent = await client.post("/v1/auth/verify-email/resend", json={"email": email})
    assert (resent.status_code, resent.json()) == (202, {"status": "verification_sent"})
    second = await mailbox.token(email)
    assert first != second

    assert (await client.post("/v1/auth/verify-email", json={"token": second})).status_code == 200
    for token in (second, first, "not-a-token"):
        again = await client.post("/v1/auth/verify-email", json={"token": token})
        error_of(again, 400, "invalid_token")
    # a verified address gets no more links, and the answer does not say so
    resent = await client.post("/v1/auth/verify-email/resend", json={"email": email})
    unknown = await client.post("/v1/auth/verify-email/resend", json={"email": "no@example.com"})
    assert resent.text == unknown.text == '{"status":"verification_sent"}'
    assert len(await mailbox.to(email)) == 2
    # the allowance was granted once
    grants = await books.entries(await personal_workspace(books, email), EntryKind.GRANT)
    assert [g.amount for g in grants] == [FREE_MONTHLY]


async def test_an_expired_verification_link_is_refused(
    client: httpx.AsyncClient, mailbox: Mailbox, books: Books
) -> None:
    email = f"late-{uuid.uuid4().hex[:8]}@example.com"
    await sign_up(client, email)
    token = await mailbox.token(email)
    async with books.sessionmaker.begin() as session:
        await session.execute(update(EmailToken).values(expires_at=utcnow() - timedelta(seconds=1)))
    error_of(await client.post("/v1/auth/verify-email", json={"token": token}), 400, "invalid_token")
    assert await books.state(await personal_workspace(books, email)) == WalletState(0, 0)


async def test_links_expire_as_the_settings_say(
    client: httpx.AsyncClient, mailbox: Mailbox, books: Books, settings: Settings
) -> None:
    email = f"ttl-{uuid.uuid4().hex[:8]}@example.com"
    await sign_up(client, email)
    await client.post("/v1/auth/password-reset", json={"email": email})
    raw = {await mailbox.token(email), await mailbox.token(email, "/reset-password")}
    async with books.sessionmaker() as session:
        tokens = (await session.scalars(select(EmailToken).order_by(EmailToken.created_at))).all()
    lifetimes = {t.purpose.value: (t.expires_at - t.created_at).total_seconds() for t in tokens}
    assert lifetimes == pytest.approx(
        {
            "verify_email": settings.email_verification_ttl_seconds,
            "reset_password": settings.password_reset_ttl_seconds,
        },
        abs=5,
    )
    assert (settings.email_verification_ttl_seconds, settings.password_reset_ttl_seconds) == (
        24 * 3600,
        3600,
    )
    # only hashes are stored
    assert raw.isdisjoint({t.token_hash for t in tokens})


# -- password reset -------------------------------------------------------------------------------


async def test_reset_answers_the_same_for_a_new_and_a_registered_address(
    client: httpx.AsyncClient, signup, mailbox: Mailbox
) -> None:
    account = await signup()
    nobody = f"nobody-{uuid.uuid4().hex[:8]}@example.com"
    known = await client.post("/v1/auth/password-reset", json={"email": account.email})
    unknown = await client.post("/v1/auth/password-reset", json={"email": nobody})
    assert (known.status_code, known.text) == (unknown.status_code, unknown.text)
    assert (known.status_code, known.json()) == (202, {"status": "reset_sent"})
    assert (await mailbox.last_to(account.email)).subject == "Choose a new password"
    assert await mailbox.to(nobody) == []


async def test_a_reset_sets_the_password_ends_every_login_and_works_once(
    client: httpx.AsyncClient, signup, mailbox: Mailbox
) -> None:
    account = await signup()
    other = (
        await client.post(
            "/v1/auth/login", json={"email": account.email, "password": account.password}
        )
    ).json()
    key = await client.post("/v1/api-keys", json={"name": "before the reset"}, headers=account.headers)
    assert (await client.get("/v1/me", headers={"Authorization": f"Bearer {key.json()['key']}"})).status_code == 200
    await client.post("/v1/auth/password-reset", json={"email": account.email})
    token = await mailbox.token(account.email, "/reset-password")

    # a refused password leaves the link usable
    weak = await client.post(
        "/v1/auth/password-reset/confirm", json={"token": token, "password": "password123456"}
    )
    error_of(weak, 400, "weak_password")
    new_password = "a brand new passphrase"
    reset = await client.post(
        "/v1/auth/password-reset/confirm", json={"token": token, "password": new_password}
    )
    assert reset.status_code == 200, reset.text
    assert reset.json()["user"]["id"] == account.user_id

    for access in (account.access_token, other["access_token"]):
        old = await client.get("/v1/me", headers={"Authorization": f"Bearer {access}"})
        error_of(old, 401, "session_revoked")
    for refresh in (account.refresh_token, other["refresh_token"]):
        assert (await client.post("/v1/auth/refresh", json={"refresh_token": refresh})).status_code == 401
    fresh = {"Authorization": f"Bearer {reset.json()['access_token']}"}
    assert (await client.get("/v1/me", headers=fresh)).status_code == 200
    # API keys made before the reset die with the old logins (the account was taken back).
    stale_key = await client.get("/v1/me", headers={"Authorization": f"Bearer {key.json()['key']}"})
    error_of(stale_key, 401, "invalid_api_key")

    old_login = await client.post(
        "/v1/auth/login", json={"email": account.email, "password": account.password}
    )
    error_of(old_login, 401, "invalid_credentials")
    new_login = await client.post(
        "/v1/auth/login", json={"email": account.email, "password": new_password}
    )
    assert new_login.status_code == 200, new_login.text

    again = await client.post(
        "/v1/auth/password-reset/confirm", json={"token": token, "password": "yet another passphrase"}
    )
    error_of(again, 400, "invalid_token")


async def test_a_reset_link_proves_the_mailbox_of_an_unverified_account(
    client: httpx.AsyncClient, mailbox: Mailbox, books: Books
) -> None:
    """Someone signed up with another person's address and never verified it; the owner asks to
    sign up, gets the reset link, and takes the account over with their own password."""
    email = f"taken-{uuid.uuid4().hex[:8]}@example.com"
    await sign_up(client, email, "squatter password one")
    await sign_up(client, email, "owner password two")  # the owner; told the address is taken
    token = await mailbox.token(email, "/reset-password")
    reset = await client.post(
        "/v1/auth/password-reset/confirm", json={"token": token, "password": "owner passphrase three"}
    )
    assert reset.status_code == 200, reset.text
    assert reset.json()["user"]["email_verified_at"] is not None
    squatter = await client.post(
        "/v1/auth/login", json={"email": email, "password": "squatter password one"}
    )
    error_of(squatter, 401, "invalid_credentials")
    # the first proof of the address granted the free credits
    assert (await books.state(await personal_workspace(books, email))).balance == FREE_MONTHLY


async def test_an_expired_reset_link_is_refused(
    client: httpx.AsyncClient, signup, mailbox: Mailbox, books: Books
) -> None:
    account = await signup()
    await client.post("/v1/auth/password-reset", json={"email": account.email})
    token = await mailbox.token(account.email, "/reset-password")
    async with books.sessionmaker.begin() as session:
        await session.execute(update(EmailToken).values(expires_at=utcnow() - timedelta(seconds=1)))
    expired = await client.post(
        "/v1/auth/password-reset/confirm", json={"token": token, "password": "a brand new passphrase"}
    )
    error_of(expired, 400, "invalid_token")
    login = await client.post(
        "/v1/auth/login", json={"email": account.email, "password": account.password}
    )
    assert login.status_code == 200


# -- the password policy --------------------------------------------------------------------------

WEAK = ["12345678", "password", " " * 8, "\x00" * 8, "password123456", "short1!", "\t" * 12, ""]


@pytest.mark.parametrize("password", WEAK)
async def test_weak_passwords_are_refused_at_sign_up(
    client: httpx.AsyncClient, mailbox: Mailbox, password: str
) -> None:
    email = f"weak-{uuid.uuid4().hex[:8]}@example.com"
    response = await sign_up(client, email, password)
    if "\x00" in password:  # no text field takes NUL characters: refused before the policy
        error_of(response, 422, "malformed_json")
    else:
        error = error_of(response, 400, "weak_password")
        assert error["details"]["reason"]
    assert await mailbox.to(email) == []


def test_the_policy_counts_visible_characters_and_knows_common_passwords() -> None:
    inputs = {"email": "ana@example.com", "name": "Ana Rahman"}
    assert weakness(PASSWORD, **inputs) is None
    assert weakness("a long password", **inputs) is None
    # ten characters, but spaces, tabs and control characters do not count
    assert "at least 10 characters" in (weakness("ab  cd\u200b\u00a0ef\x07gh", **inputs) or "")
    assert "at most 128" in (weakness("x" * 129, **inputs) or "")
    assert "Unicode" in (weakness("correct horse \ud800 battery", **inputs) or "")
    assert weakness("ana@example.com", **inputs) is not None  # the user's own address
    assert weakness("anarahman2024", **inputs) is not None
    assert weakness("qwertyuiopasdf", **inputs) is not None


async def test_a_long_password_up_to_128_characters_is_accepted(
    client: httpx.AsyncClient, mailbox: Mailbox
) -> None:
    email = f"long-{uuid.uuid4().hex[:8]}@example.com"
    password = ("Zebra orbit 7 lantern quiet " * 5)[:128]
    assert (await sign_up(client, email, password)).status_code == 202
    token = await mailbox.token(email)
    assert (await client.post("/v1/auth/verify-email", json={"token": token})).status_code == 200
    login = await client.post("/v1/auth/login", json={"email": email, "password": password})
    assert login.status_code == 200, login.text


# -- free credits once per person -----------------------------------------------------------------


async def test_twenty_team_workspaces_hold_nothing_to_spend(
    client: httpx.AsyncClient, signup, books: Books
) -> None:
    account = await signup("farmer")
    hi = {"model": "demo", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 10}
    for i in range(20):
        created = await client.post(
            "/v1/workspaces", json={"name": f"farm {i}"}, headers=account.headers
        )
        assert created.status_code == 201, created.text
        workspace_id = created.json()["id"]
        balance = await client.get("/v1/billing/balance", headers=account.in_workspace(workspace_id))
        assert (balance.json()["balance"], balance.json()["available"]) == (0, 0)
        spent = await client.post(
            "/v1/chat/completions", json=hi, headers=account.in_workspace(workspace_id)
        )
        error_of(spent, 402, "insufficient_credits")
    # only the person's own workspace holds the free credits
    personal = uuid.UUID(account.personal_workspace_id)
    assert (await books.state(personal)).balance == FREE_MONTHLY
    await books.assert_balanced()


# -- invitations ----------------------------------------------------------------------------------


async def test_an_invitation_cannot_be_taken_by_an_unverified_account(
    client: httpx.AsyncClient, signup, mailbox: Mailbox, books: Books, settings: Settings
) -> None:
    owner = await signup("owner")
    created = await client.post("/v1/workspaces", json={"name": "Crown"}, headers=owner.headers)
    workspace_id = created.json()["id"]
    boss = f"boss-{uuid.uuid4().hex[:8]}@example.com"
    invited = await client.post(
        f"/v1/workspaces/{workspace_id}/invitations",
        json={"email": boss, "role": "admin"},
        headers=owner.headers,
    )
    assert invited.status_code == 201, invited.text
    invitation_id = invited.json()["id"]
    mail = await mailbox.last_to(boss)
    assert "Crown" in mail.subject and mail.link == "http://localhost:3000/invitations"

    # Whoever signs up first with the invited address cannot log in ...
    await sign_up(client, boss)
    login = await client.post("/v1/auth/login", json={"email": boss, "password": PASSWORD})
    error_of(login, 401, "invalid_credentials")
    # ... and even with a session, cannot see, accept or decline the invitation.
    squatter = await unverified_session(books, settings, boss)
    error_of(await client.get("/v1/invitations", headers=squatter.headers), 403, "email_not_verified")
    for answer in ("accept", "decline"):
        response = await client.post(
            f"/v1/invitations/{invitation_id}/{answer}", headers=squatter.headers
        )
        error_of(response, 403, "email_not_verified")
    members = await client.get(f"/v1/workspaces/{workspace_id}/members", headers=owner.headers)
    assert [m["email"] for m in members.json()["data"]] == [owner.email]

    # The owner of the mailbox verifies and accepts.
    token = await mailbox.token(boss)
    verified = await client.post("/v1/auth/verify-email", json={"token": token})
    headers = {"Authorization": f"Bearer {verified.json()['access_token']}"}
    listed = await client.get("/v1/invitations", headers=headers)
    assert [i["id"] for i in listed.json()["data"]] == [invitation_id]
    accepted = await client.post(f"/v1/invitations/{invitation_id}/accept", headers=headers)
    assert accepted.status_code == 200, accepted.text


async def test_a_login_of_an_unverified_address_cannot_be_refreshed(
    client: httpx.AsyncClient, signup, books: Books
) -> None:
    """A login made before addresses were verified (the upgrade leaves them unverified) ends at
    its next refresh instead of living on."""
    account = await signup()
    async with books.sessionmaker.begin() as session:
        await session.execute(
            update(User).where(User.id == uuid.UUID(account.user_id)).values(email_verified_at=None)
        )
    refused = await client.post("/v1/auth/refresh", json={"refresh_token": account.refresh_token})
    error_of(refused, 401, "session_revoked")
    error_of(await client.get("/v1/me", headers=account.headers), 401, "session_revoked")
