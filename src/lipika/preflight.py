"""Checks run before the server or an operator command starts, so that a misconfiguration
ends as one line naming the setting to fix instead of a traceback from deep inside a driver.

Each store is reached once, on its own, because a driver's error (a refused connection, an
unknown host) does not say which of the three stores it came from.
"""

from __future__ import annotations

import asyncio

from pydantic import ValidationError
from sqlalchemy import text
from sqlalchemy.engine import make_url

from lipika.billing.plans import PlanCatalogue, PlanCatalogueError
from lipika.billing.pricebook import PriceBook, PriceBookError
from lipika.checkpoint import CheckpointDB
from lipika.config import ConfigurationError, Settings
from lipika.db import create_engine
from lipika.redis import create_redis

STORE_TIMEOUT_SECONDS = 10


async def check_stores(
    settings: Settings, *, checkpoint: bool = False, redis: bool = False
) -> None:
    """Connects to the app database (and, if asked, the checkpoint database and Redis)."""
    await _reach(
        "the app database",
        "LIPIKA_DATABASE_URL",
        settings.database_url or settings.app_db_url,
        _app_db(settings),
    )
    if checkpoint:
        await _reach(
            "the checkpoint database",
            "LIPIKA_CHECKPOINT_DATABASE_URL",
            settings.checkpoint_database_url or settings.checkpoint_db,
            _checkpoint_db(settings),
        )
    if redis and settings.redis_url:
        await _reach("Redis", "LIPIKA_REDIS_URL", settings.redis_url, _redis(settings))


def check_catalogues(settings: Settings) -> None:
    """Loads the price book and the plan catalogue the meter will load at start."""
    try:
        PlanCatalogue.load(PriceBook.load(settings.pricebook_path), settings.plans_path)
    except PriceBookError as exc:
        raise ConfigurationError(f"LIPIKA_PRICEBOOK_PATH: {exc}") from None
    except PlanCatalogueError as exc:
        raise ConfigurationError(f"LIPIKA_PLANS_PATH: {exc}") from None


def explain(exc: BaseException) -> str | None:
    """The one line an operator reads for a failure they fix with a setting; None otherwise."""
    if isinstance(exc, ValidationError):
        return "; ".join(_setting_error(error) for error in exc.errors())
    if isinstance(exc, ConfigurationError):
        return str(exc)
    return None


def _setting_error(error: dict) -> str:
    message = str(error["msg"]).removeprefix("Value error, ")
    if not error["loc"] or message.startswith("LIPIKA_"):
        return message
    return f"LIPIKA_{str(error['loc'][0]).upper()}: {message}"


async def _reach(store: str, setting: str, url: str, probe) -> None:  # noqa: ANN001
    try:
        await asyncio.wait_for(probe, STORE_TIMEOUT_SECONDS)
    except TimeoutError:
        raise ConfigurationError(
            f"cannot reach {store} ({setting}={_safe(url)}): no answer in {STORE_TIMEOUT_SECONDS} s"
        ) from None
    except Exception as exc:  # noqa: BLE001 - any driver error means this store is unusable
        raise ConfigurationError(
            f"cannot reach {store} ({setting}={_safe(url)}): {_first_line(exc)}"
        ) from None


async def _app_db(settings: Settings) -> None:
    engine = create_engine(settings)
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    finally:
        await engine.dispose()


async def _checkpoint_db(settings: Settings) -> None:
    db = await CheckpointDB.open(settings)
    try:
        await db.ping()
    finally:
        await db.close()


async def _redis(settings: Settings) -> None:
    client = create_redis(settings)
    try:
        await client.ping()
    finally:
        await client.aclose()


def _safe(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - never let a malformed URL hide the real error
        return "<unparsable URL>"


def _first_line(exc: BaseException) -> str:
    """The driver's own message without SQLAlchemy's wrapping and background link."""
    inner = getattr(exc, "orig", None) or exc
    lines = (str(inner) or type(inner).__name__).strip().splitlines()
    return lines[0] if lines else type(inner).__name__
