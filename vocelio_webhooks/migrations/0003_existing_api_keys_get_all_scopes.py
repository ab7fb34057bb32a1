"""Keys created before scopes existed could use the whole API: give them ``*`` so they keep
working. Keys that already list scopes are left alone."""
from django.db import migrations


def grant_all_scopes(apps, schema_editor):
    ApiKey = apps.get_model("vocelio_webhooks", "ApiKey")
    for key in ApiKey.objects.using(schema_editor.connection.alias).all():
        if not key.scopes:
            key.scopes = ["*"]
            key.save(update_fields=["scopes"])


class Migration(migrations.Migration):

    dependencies = [
        ("vocelio_webhooks", "0002_api_key_access_and_audit_log"),
    ]

    operations = [
        migrations.RunPython(grant_all_scopes, migrations.RunPython.noop),
    ]
