"""Payload templates and their append-only version history."""
from django.core.validators import RegexValidator
from django.db import models

from vocelio_webhooks.fields import OrderedJSONField
from vocelio_webhooks.validators import reject_control_characters

TEMPLATE_NAME_RE = r"^[a-z][a-z0-9_-]{0,99}$"


class PayloadTemplate(models.Model):
    """A named payload template (``salesforce_lead_template``). Its content lives in
    ``TemplateVersion`` rows; ``current_version`` is the one endpoints following the name use."""

    name = models.CharField(
        max_length=100, unique=True,
        validators=[RegexValidator(TEMPLATE_NAME_RE,
                                   "Use lowercase letters, digits, '_' and '-', starting with a letter.")],
    )
    # Shown in the admin, the API and logs: no control or bidi characters (the name is a slug).
    description = models.CharField(max_length=500, blank=True, validators=[reject_control_characters])
    current_version = models.ForeignKey(
        "TemplateVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class TemplateVersion(models.Model):
    """One immutable revision of a template. Numbers start at 1 per template; updates and
    rollbacks add a row and never rewrite one (``restored_from`` names the version a rollback
    copied)."""

    class Form(models.TextChoices):
        JSON = "json", "JSON structure"
        TEXT = "text", "Text body"

    template = models.ForeignKey(PayloadTemplate, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    form = models.CharField(max_length=10, choices=Form.choices)
    # A dict or list whose string leaves are Jinja2 (json form), or one Jinja2 string (text form).
    body = OrderedJSONField()
    content_type = models.CharField(max_length=255)
    header_templates = OrderedJSONField(default=dict, blank=True)
    author = models.CharField(max_length=200)
    note = models.CharField(max_length=500, blank=True, validators=[reject_control_characters])
    restored_from = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["template_id", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["template", "number"], name="templateversion_unique_number"),
        ]

    def __str__(self) -> str:
        return f"{self.template_id} v{self.number}"
