"""The `lipika` command: serve, migrate, and the operator commands."""

from __future__ import annotations

import typer
import uvicorn

from lipika import migrate as migrations
from lipika.config import Settings
from lipika.logs import configure_logging

cli = typer.Typer(no_args_is_help=True, add_completion=False, help="Lipika backend.")


@cli.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="Interface to bind."),
    port: int = typer.Option(8000, help="Port to bind."),
) -> None:
    """Start the API server (one Uvicorn worker; scale with more processes or pods)."""
    from lipika.app import create_app

    settings = Settings()
    configure_logging(settings.log_level, settings.log_json)
    uvicorn.run(create_app(settings), host=host, port=port, workers=1, log_config=None, access_log=False)


@cli.command()
def migrate(revision: str = typer.Argument("head", help="Target revision.")) -> None:
    """Apply database migrations to the app database (production runs this as its own step)."""
    settings = Settings()
    configure_logging(settings.log_level, settings.log_json)
    migrations.upgrade(settings.app_db_url, revision)
    typer.echo(f"app database migrated to {revision}")


def main() -> None:
    cli()
