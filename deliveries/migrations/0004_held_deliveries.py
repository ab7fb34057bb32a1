"""Held deliveries (issue 7): ``Delivery.held``, set by the beat sweep on the due rows of paused
and disabled endpoints, and the claim's index without them (``delivery_claim_order_idx``, which
replaces ``delivery_due_order_idx``), plus the sweep's index to find one endpoint's due rows, held
or not (``delivery_endpoint_held_idx``).

The column is added with a constant default (no table rewrite on PostgreSQL 11+), which stays in
the schema: a release without the column, still publishing during a rolling upgrade, inserts rows
without it. The new indexes
are built ``CONCURRENTLY`` before the old one is dropped ``CONCURRENTLY`` (hence ``atomic =
False``), so claims always have an index and publishing never waits for a build.
"""
from django.db import migrations, models

from deliveries.migration_operations import AddIndexConcurrentlyOnPostgreSQL, RemoveIndexConcurrentlyOnPostgreSQL


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ('deliveries', '0003_delivery_due_order_idx'),
        ('endpoints', '0010_refuse_control_characters_in_names'),
        ('events', '0006_event_type_name_rule'),
    ]

    operations = [
        migrations.AddField(
            model_name='delivery',
            name='held',
            field=models.BooleanField(db_default=False, default=False),
        ),
        AddIndexConcurrentlyOnPostgreSQL(
            model_name='delivery',
            index=models.Index(condition=models.Q(('held', False), ('status__in', ['pending', 'retrying'])),
                               fields=['next_attempt_at', 'id'], name='delivery_claim_order_idx'),
        ),
        AddIndexConcurrentlyOnPostgreSQL(
            model_name='delivery',
            index=models.Index(condition=models.Q(('status__in', ['pending', 'retrying'])), fields=['endpoint', 'held'],
                               name='delivery_endpoint_held_idx'),
        ),
        RemoveIndexConcurrentlyOnPostgreSQL(
            model_name='delivery',
            name='delivery_due_order_idx',
        ),
    ]
