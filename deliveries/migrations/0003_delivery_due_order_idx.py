"""The claim's index (issue 7): due deliveries in ``(next_attempt_at, id)`` order.

On PostgreSQL it is built with ``CREATE INDEX CONCURRENTLY`` (hence ``atomic = False``): a plain
``CREATE INDEX`` blocks every write to the deliveries table while it builds, i.e. publishing and
delivering stop for as long as that takes on a large table. An invalid index left by a failed
earlier attempt is dropped first, so running ``migrate`` again repairs it. Elsewhere (SQLite) a
plain index.
"""
from django.db import migrations, models

from deliveries.migration_operations import AddIndexConcurrentlyOnPostgreSQL


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
