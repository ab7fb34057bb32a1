from django.apps import AppConfig


class TemplatesAppConfig(AppConfig):
    """Payload templates: versioned Jinja2 templates and sandboxed rendering."""

    name = "templates_app"
    verbose_name = "Templates"
