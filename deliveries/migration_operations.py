"""Migration operations shared by the deliveries migrations: index changes that must not block
writes to the deliveries table on PostgreSQL (``CREATE``/``DROP INDEX CONCURRENTLY``, so the
migrations using them set ``atomic = False``), and the plain operations elsewhere (SQLite).
"""
from django.contrib.postgres.operations import AddIndexConcurrently, RemoveIndexConcurrently
from django.db.migrations.operations import AddIndex, RemoveIndex


class AddIndexConcurrentlyOnPostgreSQL(AddIndexConcurrently):
    """``AddIndexConcurrently`` on PostgreSQL, ``AddIndex`` on other databases."""

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            # A CREATE INDEX CONCURRENTLY that failed (a timeout, a cancelled deploy) leaves the
            # index behind marked invalid: maintained on every write, never used, and in the way
            # of the next attempt ("already exists"). Drop such a leftover, then build it again; a
            # valid one is kept as it is.
            with schema_editor.connection.cursor() as cursor:
                cursor.execute("SELECT NOT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                               "WHERE c.relname = %s AND pg_table_is_visible(c.oid)", [self.index.name])
                row = cursor.fetchone()
            if row and row[0]:
                schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {schema_editor.quote_name(self.index.name)}")
            elif row:  # built and valid: a run interrupted after it (a later build) is being finished.
                # The name alone decides, not the definition: a changed index needs a new name.
                return None
            return super().database_forwards(app_label, schema_editor, from_state, to_state)
        return AddIndex.database_forwards(self, app_label, schema_editor, from_state, to_state)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            return super().database_backwards(app_label, schema_editor, from_state, to_state)
        return AddIndex.database_backwards(self, app_label, schema_editor, from_state, to_state)


class RemoveIndexConcurrentlyOnPostgreSQL(RemoveIndexConcurrently):
    """``RemoveIndexConcurrently`` on PostgreSQL (a plain ``DROP INDEX`` waits for, and then
    blocks, every query on the table), ``RemoveIndex`` on other databases."""

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            return super().database_forwards(app_label, schema_editor, from_state, to_state)
        return RemoveIndex.database_forwards(self, app_label, schema_editor, from_state, to_state)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            return super().database_backwards(app_label, schema_editor, from_state, to_state)
        return RemoveIndex.database_backwards(self, app_label, schema_editor, from_state, to_state)
