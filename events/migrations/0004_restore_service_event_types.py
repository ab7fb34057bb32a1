"""Bring back the event types the service publishes itself (``events.service_types``) where one
was deleted before the admin refused it: without ``system.health_alert`` every endpoint health and
analytics alert was logged as failed and lost. Existing rows are left alone; nothing to undo."""
from django.db import migrations


def restore(apps, schema_editor):
    from events.service_types import restore_missing

    restore_missing(apps.get_model("events", "EventType"))


class Migration(migrations.Migration):
    dependencies = [("events", "0003_priority_and_ordered_json")]
    operations = [migrations.RunPython(restore, migrations.RunPython.noop)]
