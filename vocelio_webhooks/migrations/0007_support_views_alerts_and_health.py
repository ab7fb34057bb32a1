"""The Support group may also view alert rules, alerts and endpoint health (issue 6).

Support staff answer "is this endpoint healthy, and did an alert fire?"; without these view
permissions the admin answered them 403 on exactly those pages. View only: changing rules stays
with admins (as on the API, where rule changes need an admin key).
"""
import importlib

from django.db import migrations

GROUP_NAME = "Support"
VIEW_PERMISSIONS = [
    ("analytics", "view_alertrule"),
    ("analytics", "view_alert"),
    ("endpoints", "view_endpointhealth"),
]


def add_view_permissions(apps, schema_editor):
    """Add the three view permissions to the Support group (created by 0005). Safe to run again,
    also with the project's app registry and no schema editor (tests recreate the group so)."""
    using = schema_editor.connection.alias if schema_editor else "default"
    # 0005's routine makes sure every model's permissions exist now (post_migrate would create
    # them only after all migrations) and creates the group if it is missing.
    support_group = importlib.import_module("vocelio_webhooks.migrations.0005_support_group")
    support_group.create_support_group(apps, schema_editor)
    Permission = apps.get_model("auth", "Permission")
    group = apps.get_model("auth", "Group").objects.using(using).get(name=GROUP_NAME)
    wanted = Permission.objects.using(using).filter(
        content_type__app_label__in={label for label, _ in VIEW_PERMISSIONS},
        codename__in={codename for _, codename in VIEW_PERMISSIONS},
    )
    group.permissions.add(*[p for p in wanted if (p.content_type.app_label, p.codename) in VIEW_PERMISSIONS])


def remove_view_permissions(apps, schema_editor):
    using = schema_editor.connection.alias
    group = apps.get_model("auth", "Group").objects.using(using).filter(name=GROUP_NAME).first()
    if group is None:
        return
    Permission = apps.get_model("auth", "Permission")
    for app_label, codename in VIEW_PERMISSIONS:
        group.permissions.remove(*Permission.objects.using(using).filter(content_type__app_label=app_label,
                                                                         codename=codename))


class Migration(migrations.Migration):

    dependencies = [
        ("vocelio_webhooks", "0006_heartbeat"),
        ("vocelio_webhooks", "0005_support_group"),
        ("analytics", "0003_alert_rule_snapshot"),
        ("endpoints", "0005_health_rate_limits_ordered_json"),
    ]

    operations = [
        migrations.RunPython(add_view_permissions, remove_view_permissions),
    ]
