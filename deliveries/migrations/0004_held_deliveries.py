"""Held deliveries (issue 7): ``Delivery.held``, set by the beat sweep on the due rows of paused
and disabled endpoints (``deliveries.services.sweep.hold_and_release``). Its indexes come in 0005.

The column is added with a constant default (no table rewrite on PostgreSQL 11+), which stays in
the schema: a release without the column, still publishing during a rolling upgrade, inserts rows
without it. Atomic and alone, so an interrupted index build in 0005 never leaves this half done.
"""
from django.db import migrations, models


def _lock_timeout(apps, schema_editor):
    """PostgreSQL: give up after 10 s instead of queueing behind a long transaction for the table
    lock ``ADD COLUMN`` needs (every query on the table would queue behind it meanwhile); run
    ``migrate`` again later."""
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("SET LOCAL lock_timeout = '10s'")


class Migration(migrations.Migration):

    dependencies = [
        ('deliveries', '0003_delivery_due_order_idx'),
        ('endpoints', '0010_refuse_control_characters_in_names'),
        ('events', '0006_event_type_name_rule'),
    ]

    operations = [
        migrations.RunPython(_lock_timeout, migrations.RunPython.noop, elidable=True),
        migrations.AddField(
            model_name='delivery',
            name='held',
            field=models.BooleanField(db_default=False, default=False),
        ),
    ]
