"""Load the seed's event type catalog (``events/catalog.py``). Re-running is harmless: existing
types are updated, custom types are left alone."""
from django.db import migrations


def load_catalog(apps, schema_editor):
    from events.catalog import EVENT_TYPES

    EventType = apps.get_model("events", "EventType")
    for entry in EVENT_TYPES:
        EventType.objects.update_or_create(
            name=entry["name"],
            defaults={"category": entry["category"], "description": entry["description"],
                      "sample_data": entry["sample_data"]},
        )


def unload_catalog(apps, schema_editor):
    from events.catalog import EVENT_TYPES

    EventType = apps.get_model("events", "EventType")
    EventType.objects.filter(name__in=[e["name"] for e in EVENT_TYPES], events__isnull=True).delete()


class Migration(migrations.Migration):
    dependencies = [("events", "0001_initial")]
    operations = [migrations.RunPython(load_catalog, unload_catalog)]
