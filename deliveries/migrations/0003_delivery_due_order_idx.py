"""The claim's index (issue 7): due deliveries in ``(next_attempt_at, id)`` order.

On PostgreSQL it is built with ``CREATE INDEX CONCURRENTLY`` (hence ``atomic = False``): a plain
``CREATE INDEX`` blocks every write to the deliveries table while it builds, i.e. publishing and
delivering stop for as long as that takes on a large table. An invalid index left by a failed
earlier attempt is dropped first, so running ``migrate`` again repairs it. Elsewhere (SQLite) a
plain index.
"""
from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models
from django.db.migrations.operations import AddIndex


class AddIndexConcurrentlyOnPostgreSQL(AddIndexConcurrently):
    """``AddIndexConcurrently`` on PostgreSQL, ``AddIndex`` on other databases."""

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            # A CREATE INDEX CONCURRENTLY that failed (a timeout, a cancelled deploy) leaves the
            # index behind marked invalid: maintained on every write, never used, and in the way
            # of the next attempt ("already exists"). Drop such a leftover, then build it again.
            with schema_editor.connection.cursor() as cursor:
                cursor.execute("SELECT NOT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                               "WHERE c.relname = %s AND pg_table_is_visible(c.oid)", [self.index.name])
                row = cursor.fetchone()
            if row and row[0]:
                schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {schema_editor.quote_name(self.index.name)}")
            return super().database_forwards(app_label, schema_editor, from_state, to_state)
        return AddIndex.database_forwards(self, app_label, schema_editor, from_state, to_state)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            return super().database_backwards(app_label, schema_editor, from_state, to_state)
        return AddIndex.database_backwards(self, app_label, schema_editor, from_state, to_state)


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ('deliveries', '0002_delivery_replay'),
        ('endpoints', '0009_filters_refuse_nul'),
        ('events', '0003_priority_and_ordered_json'),
    ]

    operations = [
        AddIndexConcurrentlyOnPostgreSQL(
            model_name='delivery',
            index=models.Index(condition=models.Q(('status__in', ['pending', 'retrying'])), fields=['next_attempt_at', 'id'], name='delivery_due_order_idx'),
        ),
    ]
