"""The claim's index (issue 7): due deliveries in ``(next_attempt_at, id)`` order.

On PostgreSQL it is built with ``CREATE INDEX CONCURRENTLY`` (hence ``atomic = False``): a plain
``CREATE INDEX`` blocks every write to the deliveries table while it builds, i.e. publishing and
delivering stop for as long as that takes on a large table. Elsewhere (SQLite) a plain index.
"""
from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models
from django.db.migrations.operations import AddIndex


class AddIndexConcurrentlyOnPostgreSQL(AddIndexConcurrently):
    """``AddIndexConcurrently`` on PostgreSQL, ``AddIndex`` on other databases."""

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
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
