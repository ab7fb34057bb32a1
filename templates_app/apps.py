from django.apps import AppConfig


class TemplatesAppConfig(AppConfig):
    """Payload templates (issue 3 fills this app in)."""

    name = "templates_app"
    verbose_name = "Templates"
