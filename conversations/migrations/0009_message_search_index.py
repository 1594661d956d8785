"""Full-text search over message text on PostgreSQL (ConversationQuerySet.search).

A stored column `search_vector = to_tsvector('simple', left(content, 100000))` with a GIN index,
and a GIN expression index on a conversation's own words (models.ConversationVector).
Stored, not an expression index: ranking needs the vector of every matching message, and
recomputing it was 8x slower (175 ms against 20 ms to rank 8,700 matches of 100,000 messages;
1.4 s against 70 ms for a word in nearly every message: docs/performance.md). The first 100,000
characters: a tsvector is capped at 1 MB, and a 1,000,000-character reply (MAX_REPLY_CHARS) of
distinct words would otherwise make its flush fail.

PostgreSQL only: SQLite keeps substring search, and nothing happens there. The column is not a
model field (SQLite has none); `models.StoredVector` names it in queries. Adding it rewrites the
table once; the index is then built CONCURRENTLY (hence a non-atomic migration) so replies keep
being written meanwhile.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations

TABLE = "conversations_message"
ADD_COLUMN = (
    f"ALTER TABLE {TABLE} ADD COLUMN IF NOT EXISTS search_vector tsvector GENERATED ALWAYS AS "
    "(to_tsvector('simple'::regconfig, left(content, 100000))) STORED"
)
ADD_INDEX = (
    f"CREATE INDEX CONCURRENTLY IF NOT EXISTS msg_search_vector ON {TABLE} "
    "USING gin (search_vector)"
)
# models.ConversationVector, character for character: the planner matches expressions.
ADD_CONVERSATION_INDEX = (
    "CREATE INDEX CONCURRENTLY IF NOT EXISTS conv_search_vector ON conversations_conversation "
    "USING gin (to_tsvector('simple'::regconfig, title || ' ' || auto_title || ' ' || "
    "external_user_id || ' ' || (generated_titles)::text || ' ' || (metadata)::text))"
)
DROP_INDEX = "DROP INDEX CONCURRENTLY IF EXISTS msg_search_vector"
DROP_CONVERSATION_INDEX = "DROP INDEX CONCURRENTLY IF EXISTS conv_search_vector"
DROP_COLUMN = f"ALTER TABLE {TABLE} DROP COLUMN IF EXISTS search_vector"


def _on_postgresql(*statements: str) -> Any:
    def run(apps: Any, schema_editor: Any) -> None:
        if schema_editor.connection.vendor == "postgresql":
            for sql in statements:
                schema_editor.execute(sql)

    return run


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("conversations", "0008_teams"),
    ]

    operations = [
        migrations.RunPython(
            _on_postgresql(ADD_COLUMN, ADD_INDEX, ADD_CONVERSATION_INDEX),
            _on_postgresql(DROP_CONVERSATION_INDEX, DROP_INDEX, DROP_COLUMN), elidable=False),
    ]
