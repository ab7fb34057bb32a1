"""The database cache table (``vocelio_cache``) used when ``REDIS_URL`` is not set: DRF's
per-key throttling keeps its counters there, so every gunicorn worker shares one limit.

It is created whatever the current ``CACHES`` setting says, so a deployment can switch from
Redis to the database cache without running ``createcachetable`` by hand.
"""
from django.core.management.commands.createcachetable import Command as CreateCacheTable
from django.db import migrations

CACHE_TABLE = "vocelio_cache"


def create_cache_table(apps, schema_editor):
    command = CreateCacheTable()
    command.verbosity = 0
    command.create_table(schema_editor.connection.alias, CACHE_TABLE, dry_run=False)


def drop_cache_table(apps, schema_editor):
    if CACHE_TABLE in schema_editor.connection.introspection.table_names():
        schema_editor.execute(f"DROP TABLE {schema_editor.quote_name(CACHE_TABLE)}")


class Migration(migrations.Migration):

    dependencies = [
        ("vocelio_webhooks", "0003_existing_api_keys_get_all_scopes"),
    ]

    operations = [
        migrations.RunPython(create_cache_table, drop_cache_table),
    ]
