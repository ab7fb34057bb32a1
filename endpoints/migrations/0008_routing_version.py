"""The routing version table and the triggers that move it (endpoints/routing.py, issue 7)."""
from django.db import migrations


def install(apps, schema_editor):
    from endpoints.routing import install_version_triggers

    install_version_triggers(schema_editor)


def remove(apps, schema_editor):
    from endpoints.routing import remove_version_triggers

    remove_version_triggers(schema_editor)


class Migration(migrations.Migration):

    dependencies = [
        ("endpoints", "0007_batch_max_events"),
        ("events", "0003_priority_and_ordered_json"),
    ]

    operations = [migrations.RunPython(install, remove)]
