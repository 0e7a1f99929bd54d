"""The suite runs every database-touching test twice: on real PostgreSQL + Redis, and on the
embedded defaults (SQLite files + the in-process Redis stand-in)."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from lipika import migrate
from lipika.app import create_app
from lipika.config import Settings
from lipika.db import Base, create_engine
from lipika.logs import configure_logging
from tests.fixtures.databases import REDIS_URL, PostgresDatabases, require_services

if TYPE_CHECKING:
    from tests.fixtures.fakes.fixtures import FakeProviders
    from tests.fixtures.mail import Mailbox

BACKENDS = ["sqlite", "postgres"]

pytest_plugins = [
    "tests.fixtures.ledger",
    "tests.fixtures.fakes.fixtures",
    "tests.fixtures.mail",
    "tests.fixtures.plans",
]

# Logs as in production (JSON lines, plain tracebacks); only warnings and errors in test output.
configure_logging("WARNING", json=True)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked `postgres` do not run on the SQLite backend. Skipped here, at collection,
    rather than in a fixture: a fixture would first start the SQLite app only for it to be shut
    down at once."""
    for item in items:
        callspec = getattr(item, "callspec", None)
        if (
            item.get_closest_marker("postgres")
            and callspec is not None
            and callspec.params.get("backend") == "sqlite"
        ):
            item.add_marker(pytest.mark.skip(reason="PostgreSQL only"))


@pytest.fixture(scope="session")
def postgres_databases() -> Iterator[PostgresDatabases]:
    require_services()
    databases = PostgresDatabases.create()
    try:
        migrate.upgrade(Settings(database_url=databases.app_url).app_db_url)
        yield databases
    finally:
        databases.drop()


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


# The suite signs up and logs in hundreds of times from one address: limits it never reaches
# (tests/auth/test_limits.py sets tight ones). Counters in the shared Redis are this run's own.
LOOSE_LIMITS = {
    name: "100000/minute"
    for name in Settings.model_fields
    if "_limits_per_" in name
}
RUN_KEY_PREFIX = f"lipika-test-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
def settings(backend: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    data_dir = tmp_path_factory.mktemp(f"data-{backend}")
    common = {"data_dir": data_dir, "log_json": False, "redis_key_prefix": RUN_KEY_PREFIX, **LOOSE_LIMITS}
    if backend == "sqlite":
        return Settings(**common, _env_file=None)
    databases: PostgresDatabases = request.getfixturevalue("postgres_databases")
    return Settings(
        **common,
        database_url=databases.app_url,
        checkpoint_database_url=databases.checkpoint_url,
        redis_url=REDIS_URL,
        _env_file=None,
    )


@pytest.fixture(scope="session")
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    application = create_app(settings)
    async with LifespanManager(application) as manager:
        # What the lifespan yielded (asgi-lifespan keeps it private), for tests that swap a part.
        manager.app.lifespan_state = manager._state  # type: ignore[attr-defined]
        yield manager.app


@pytest.fixture(scope="session")
async def provider_app(settings: Settings, fake_providers: FakeProviders) -> AsyncIterator[FastAPI]:
    """A second app on the same databases, with every provider configured and pointed at the
    fake servers. Accounts, tokens and keys made through `client` work here too."""
    configured = Settings(**{**settings.model_dump(), **fake_providers.settings_kwargs()}, _env_file=None)
    async with LifespanManager(create_app(configured)) as manager:
        yield manager.app


@pytest.fixture
async def provider_client(provider_app: FastAPI, client: httpx.AsyncClient) -> AsyncIterator[httpx.AsyncClient]:
    """`client`, but for `provider_app` (tables are emptied after the test, by `client`)."""
    transport = httpx.ASGITransport(app=provider_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://lipika.test") as http:
        yield http


@pytest.fixture(scope="session")
async def db_engine(app: FastAPI, settings: Settings) -> AsyncIterator[AsyncEngine]:
    """The tests' own engine on the app database (after the app has migrated it)."""
    engine = create_engine(settings)
    yield engine
    await engine.dispose()


@pytest.fixture
async def client(app: FastAPI, db_engine: AsyncEngine) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://lipika.test") as http:
        yield http
    await _empty_tables(db_engine)


async def _empty_tables(engine: AsyncEngine) -> None:
    """Each test starts from empty tables; cheaper than new databases, and real commits stay real."""
    tables = [t.name for t in reversed(Base.metadata.sorted_tables)]
    async with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            await conn.execute(text(f"TRUNCATE {', '.join(tables)} CASCADE"))
        else:
            for table in tables:
                await conn.execute(text(f"DELETE FROM {table}"))


_emails = itertools.count()


@dataclass
class Account:
    """A signed-up user, with headers for calls in their personal or another workspace."""

    email: str
    password: str
    user_id: str
    access_token: str
    refresh_token: str
    personal_workspace_id: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}

    def in_workspace(self, workspace_id: str) -> dict[str, str]:
        return {**self.headers, "X-Workspace-Id": workspace_id}


@pytest.fixture
def signup(client: httpx.AsyncClient, mailbox: Mailbox):
    """Signs up, verifies the address with the link the app mailed, and returns the account
    logged in (by the verification)."""

    async def make(name: str = "user", password: str = "correct horse battery") -> Account:
        email = f"{name}{next(_emails)}@example.com"
        response = await client.post("/v1/auth/signup", json={"email": email, "password": password, "name": name})
        assert response.status_code == 202, response.text
        verified = await client.post("/v1/auth/verify-email", json={"token": await mailbox.token(email)})
        assert verified.status_code == 200, verified.text
        body = verified.json()
        account = Account(email, password, body["user"]["id"], body["access_token"], body["refresh_token"])
        me = await client.get("/v1/me", headers=account.headers)
        account.personal_workspace_id = me.json()["workspace"]["id"]
        return account

    return make


@pytest.fixture
def team(client: httpx.AsyncClient, signup, books):
    """A team workspace with an owner, an admin and a member; returns (workspace_id, accounts).

    A new team workspace starts empty; this one is put on the free plan as an operator would
    (`lipika plans assign`), so it holds the free plan's monthly credits."""

    async def make() -> tuple[str, dict[str, Account]]:
        owner, admin, member = [await signup(role) for role in ("owner", "admin", "member")]
        response = await client.post("/v1/workspaces", json={"name": "Team"}, headers=owner.headers)
        assert response.status_code == 201, response.text
        workspace_id = response.json()["id"]
        await books.assign_plan(uuid.UUID(workspace_id), "free")
        for account, role in ((admin, "admin"), (member, "member")):
            invited = await client.post(
                f"/v1/workspaces/{workspace_id}/invitations",
                json={"email": account.email, "role": role},
                headers=owner.headers,
            )
            assert invited.status_code == 201, invited.text
            accepted = await client.post(f"/v1/invitations/{invited.json()['id']}/accept", headers=account.headers)
            assert accepted.status_code == 200, accepted.text
        return workspace_id, {"owner": owner, "admin": admin, "member": member}

    return make
