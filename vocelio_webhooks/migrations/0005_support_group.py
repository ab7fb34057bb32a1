"""The "Support" group for the Django admin and the ``deliveries.retry_delivery`` permission.

Support staff can view deliveries, attempts, events, event types, endpoints and templates, and
retry deliveries (the admin action "Retry selected deliveries"). They cannot change or delete
anything, and the endpoint admin shows them secrets masked only. Give a user the role by making
them staff and adding them to the group.
"""
from django.contrib.auth.management import create_permissions
from django.db import migrations

GROUP_NAME = "Support"
RETRY_PERMISSION = ("deliveries", "delivery", "retry_delivery", "Can retry delivery")
VIEW_PERMISSIONS = [
    ("deliveries", "view_delivery"),
    ("deliveries", "view_deliveryattempt"),
    ("events", "view_event"),
    ("events", "view_eventtype"),
    ("endpoints", "view_webhookendpoint"),
    ("templates_app", "view_payloadtemplate"),
    ("templates_app", "view_templateversion"),
]


def create_support_group(apps, schema_editor):
    """Create (or complete) the Support group. Safe to run again."""
    using = schema_editor.connection.alias if schema_editor else "default"
    # Model permissions are normally created after all migrations (post_migrate); make sure the
    # ones the group needs exist now, on a fresh database too.
    for app_config in apps.get_app_configs():
        if getattr(app_config, "models_module", None) is None:  # the migration state's stand-ins
            app_config.models_module = True
            create_permissions(app_config, apps=apps, verbosity=0, using=using)
            app_config.models_module = None
        else:
            create_permissions(app_config, apps=apps, verbosity=0, using=using)
    ContentType = apps.get_model("contenttypes", "ContentType")
    Permission = apps.get_model("auth", "Permission")
    Group = apps.get_model("auth", "Group")

    app_label, model, codename, name = RETRY_PERMISSION
    delivery_type, _ = ContentType.objects.using(using).get_or_create(app_label=app_label, model=model)
    retry, _ = Permission.objects.using(using).get_or_create(
        content_type=delivery_type, codename=codename, defaults={"name": name}
    )
    group, _ = Group.objects.using(using).get_or_create(name=GROUP_NAME)
    views = Permission.objects.using(using).filter(
        content_type__app_label__in={label for label, _ in VIEW_PERMISSIONS},
        codename__in={codename for _, codename in VIEW_PERMISSIONS},
    )
    group.permissions.add(retry, *[p for p in views if (p.content_type.app_label, p.codename) in VIEW_PERMISSIONS])


def remove_support_group(apps, schema_editor):
    using = schema_editor.connection.alias
    apps.get_model("auth", "Group").objects.using(using).filter(name=GROUP_NAME).delete()
    apps.get_model("auth", "Permission").objects.using(using).filter(
        content_type__app_label="deliveries", codename="retry_delivery"
    ).delete()


class Migration(migrations.Migration):

    dependencies = [
        ("vocelio_webhooks", "0004_cache_table"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("deliveries", "0001_initial"),
        ("events", "0002_seed_event_types"),
        ("endpoints", "0003_secret_rotation_and_ca_bundle"),
        ("templates_app", "0001_initial"),
    ]

    operations = [
        migrations.RunPython(create_support_group, remove_support_group),
    ]
