"""The one place where SQL identifiers are built from user input."""

import hashlib
import re

# Letters, digits and underscore; at most 50 characters so that "<user_id>_interactions"
# (13 more bytes, all ASCII) stays within PostgreSQL's 63-byte identifier limit.
USER_ID_REGEX = r"^[A-Za-z0-9_]{1,50}$"
USER_TABLE_SUFFIX = "_interactions"
# The schema of the per-user tables: backup, vacuum and monitoring take or leave them by name.
USER_EVENTS_SCHEMA = "user_events"
MAX_IDENTIFIER_BYTES = 63

_USER_ID = re.compile(USER_ID_REGEX)


def quote_identifier(name: str) -> str:
    """Double-quote an identifier the way PostgreSQL's quote_ident does."""
    if len(name.encode("utf-8")) > MAX_IDENTIFIER_BYTES:
        raise ValueError(f"identifier longer than {MAX_IDENTIFIER_BYTES} bytes: {name!r}")
    return '"' + name.replace('"', '""') + '"'


def user_table_name(user_id: str) -> str:
    """Unquoted name of a user's interaction table, e.g. 'U12345_interactions'."""
    if not _USER_ID.fullmatch(user_id):
        raise ValueError(f"invalid user_id: {user_id!r}")
    return user_id + USER_TABLE_SUFFIX


def user_table(user_id: str) -> str:
    """Quoted, schema-qualified, SQL-ready identifier of a user's interaction table."""
    return qualified_user_table(user_table_name(user_id))


def qualified_user_table(table_name: str) -> str:
    """A per-user table's name (as the registry holds it) quoted and in its schema."""
    return f"{quote_identifier(USER_EVENTS_SCHEMA)}.{quote_identifier(table_name)}"


def user_index_name(user_id: str) -> str:
    """Name of the timestamp index on a user's table: readable prefix plus a hash, so it is
    unique and within 63 bytes even for the longest user ids."""
    digest = hashlib.sha1(user_table_name(user_id).encode()).hexdigest()[:10]
    return f"{user_id[:40]}_ts_{digest}"
