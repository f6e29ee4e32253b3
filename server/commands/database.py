"""Which database a command that opens Postgres directly (`tally apikeys`, `tally billing`, `tally migrate`)
uses, and the one way such a command opens it (`command_database`).

The same one `tally serve` uses, found the same way (server.config.load_settings): TALLY_POSTGRES_URL
or `postgres_url` in the config file, else the embedded server in the project's data dir. A command
that only reads or changes what is there never creates an empty embedded database: a key made in a
database no server uses would never work.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy.engine import make_url

from server.commands.common import fail, stderr
from server.config import Settings, find_project


def describe(settings: Settings) -> str:
    if settings.postgres_url is not None:
        shown = make_url(settings.postgres_url).render_as_string(hide_password=True)
        return f"Postgres at {shown}"
    return f"the embedded Postgres in {(settings.data_dir / 'postgres').resolve()}"


def embedded_exists(data_dir: Path) -> bool:
    return (data_dir / "postgres" / "PG_VERSION").is_file()


def announce(settings: Settings, *, create: bool) -> None:
    """Says on stderr which database is used; stops (exit 1) if it is an embedded one that does not
    exist and `create` is false."""
    if settings.postgres_url is None and not create and not embedded_exists(settings.data_dir):
        project = find_project()
        where = (
            f"no database in {settings.data_dir.resolve()}"
            if project.found or settings.data_dir.resolve() != project.data_dir
            else f"no Tally project here: no .tally data dir or config.yaml in {project.root} or its parents"
        )
        fail(
            f"{where}. Run this from the directory where `tally serve` (`make run`) runs, or set TALLY_DATA_DIR "
            "or TALLY_POSTGRES_URL to the database it uses (`tally migrate` creates a new embedded one)."
        )
    stderr.print(f"database: {describe(settings)}", highlight=False)


@contextlib.contextmanager
def command_database(settings: Settings, *, migrate: bool) -> Iterator[str]:
    """The database's URL for the length of a command: the embedded server started for it (or joined,
    when `tally serve` runs on the same data dir) and stopped after; migrated first if `migrate`."""
    from adapters.postgres.db import EmbeddedPostgres, run_migrations

    embedded = EmbeddedPostgres(settings.data_dir) if settings.postgres_url is None else None
    try:
        url = embedded.start() if embedded is not None else settings.postgres_url
        assert url is not None
        if migrate:
            run_migrations(url)
        yield url
    finally:
        if embedded is not None:
            embedded.stop()
