"""Turn the plain database URLs operators write into what each driver expects."""

from __future__ import annotations

from sqlalchemy.engine import make_url

_POSTGRES_SCHEMES = {"postgres", "postgresql", "postgresql+asyncpg", "postgresql+psycopg"}
_SQLITE_SCHEMES = {"sqlite", "sqlite+aiosqlite"}


def to_async_sqlalchemy_url(url: str) -> str:
    """`postgresql://u@h/db` -> asyncpg; `sqlite:///path` -> aiosqlite."""
    parsed = make_url(url)
    if parsed.drivername in _POSTGRES_SCHEMES:
        return parsed.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)
    if parsed.drivername in _SQLITE_SCHEMES:
        return parsed.set(drivername="sqlite+aiosqlite").render_as_string(hide_password=False)
    raise ValueError(f"unsupported database URL scheme: {parsed.drivername!r}")


def to_checkpoint_conninfo(url: str) -> str:
    """A libpq URL for psycopg, or `sqlite:///path` kept as is for the SQLite saver."""
    parsed = make_url(url)
    if parsed.drivername in _POSTGRES_SCHEMES:
        return parsed.set(drivername="postgresql").render_as_string(hide_password=False)
    if parsed.drivername in _SQLITE_SCHEMES:
        return parsed.set(drivername="sqlite").render_as_string(hide_password=False)
    raise ValueError(f"unsupported checkpoint database URL scheme: {parsed.drivername!r}")


def sqlite_path(url: str) -> str | None:
    """The file path of a SQLite URL (None for in-memory or non-SQLite URLs)."""
    parsed = make_url(url)
    if not parsed.drivername.startswith("sqlite") or parsed.database in (None, "", ":memory:"):
        return None
    return parsed.database
