"""Indexes for held deliveries (issue 7): the claim's index without held rows
(``delivery_claim_order_idx``, which replaces ``delivery_due_order_idx``), and one endpoint's due
rows oldest first, not held (``delivery_endpoint_due_idx``: the per-endpoint claim and the sweep's
hold) and held (``delivery_endpoint_held_idx``: the sweep's release).

Built ``CONCURRENTLY`` before the old index is dropped ``CONCURRENTLY`` (hence ``atomic =
False``), so claims always have an index and publishing never waits for a build. Interrupted
(a cancelled deploy, a statement timeout), running ``migrate`` again finishes it: an index
already built is kept, an invalid one is built again, and the old one is dropped if it exists.
"""
from django.db import migrations, models

from deliveries.migration_operations import AddIndexConcurrentlyOnPostgreSQL, RemoveIndexConcurrentlyOnPostgreSQL


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ('deliveries', '0004_held_deliveries'),
    ]

    operations = [
        AddIndexConcurrentlyOnPostgreSQL(
            model_name='delivery',
            index=models.Index(condition=models.Q(('attempt_count__gte', 0), ('held', False),
                                                  ('status__in', ['pending', 'retrying'])),
                               fields=['next_attempt_at', 'id'], name='delivery_claim_order_idx'),
        ),
        AddIndexConcurrentlyOnPostgreSQL(
            model_name='delivery',
            index=models.Index(condition=models.Q(('held', False), ('status__in', ['pending', 'retrying'])),
                               fields=['endpoint', 'next_attempt_at', 'id'], name='delivery_endpoint_due_idx'),
        ),
        AddIndexConcurrentlyOnPostgreSQL(
            model_name='delivery',
            index=models.Index(condition=models.Q(('held', True), ('status__in', ['pending', 'retrying'])),
                               fields=['endpoint', 'next_attempt_at', 'id'], name='delivery_endpoint_held_idx'),
        ),
        RemoveIndexConcurrentlyOnPostgreSQL(
            model_name='delivery',
            name='delivery_due_order_idx',
        ),
    ]
