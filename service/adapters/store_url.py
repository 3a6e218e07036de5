"""Where the store is: a URL (``sqlite:///…`` or ``postgresql://…``) as the ``eventsourcing``
environment that opens it.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from service.adapters.datastore import LIBPQ_PARAMETERS, LIBPQ_PREFIX


class StoreURLError(ValueError):
    pass


def store_environment(url: str, *, pool_size: int | None = None) -> dict[str, str]:
    """The ``eventsourcing`` environment for a store URL.

    ``sqlite:///relative.db``, ``sqlite:////absolute.db``, ``sqlite:///:memory:`` and
    ``postgresql://user:password@host:port/dbname?schema=name&pool_size=N``, which may also
    carry libpq's TLS parameters (``sslmode``, ``sslrootcert``, ``sslcert``, ``sslkey``, ...).

    ``pool_size`` is the number of SQLite connections kept open (default 5): one beyond it
    is opened for a single transaction and closed after, which costs a process with many
    threads more than the transaction. PostgreSQL's stays the URL's (default 5, plus 5
    overflow), since every server's connections count against the database's limit.
    """
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        path = unquote(parts.path).removeprefix("/")
        if not path:
            raise StoreURLError(f"{url!r}: sqlite URLs name a file, e.g. sqlite:///flashpoint.db")
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        return {
            "PERSISTENCE_MODULE": "eventsourcing.sqlite",
            "SQLITE_DBNAME": path,
            "SQLITE_LOCK_TIMEOUT": "30",
            "SQLITE_POOL_SIZE": str(pool_size or 5),
        }
    if parts.scheme in ("postgresql", "postgres"):
        query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
        dbname = unquote(parts.path.removeprefix("/"))
        if not dbname:
            raise StoreURLError(f"{url!r}: a postgresql URL names its database")
        env = {
            "PERSISTENCE_MODULE": "eventsourcing.postgres",
            "POSTGRES_DBNAME": dbname,
            "POSTGRES_HOST": parts.hostname or "127.0.0.1",
            "POSTGRES_PORT": str(parts.port or 5432),
            "POSTGRES_USER": unquote(parts.username or "postgres"),
            "POSTGRES_PASSWORD": unquote(parts.password or ""),
            "POSTGRES_POOL_SIZE": query.get("pool_size", "5"),
            "POSTGRES_MAX_OVERFLOW": query.get("max_overflow", "5"),
            "POSTGRES_CONNECT_TIMEOUT": query.get("connect_timeout", "2"),
            "POSTGRES_LOCK_TIMEOUT": query.get("lock_timeout", "5"),
            "POSTGRES_PRE_PING": "y",
        }
        if "schema" in query:
            env["POSTGRES_SCHEMA"] = query["schema"]
        for name in LIBPQ_PARAMETERS:  # ?sslmode=verify-full&sslrootcert=/path/ca.pem ...
            if name in query:
                env[LIBPQ_PREFIX + name.upper()] = query[name]
        return env
    raise StoreURLError(
        f"{url!r}: unsupported store; use sqlite:///path/file.db or postgresql://host/dbname"
    )


def redact(url: str) -> str:
    """The URL without its password, for logs."""
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return parts._replace(netloc=netloc).geturl()
    return url
