"""Model fields shared by the apps."""
import json

from django.db import models


class OrderedJSONField(models.TextField):
    """JSON stored as text, so object keys keep the order they were sent in.

    PostgreSQL's ``jsonb`` (what Django's ``JSONField`` uses) reorders object keys, so a template
    ``{"crm_lead": …, "timestamp": …, "source": …}`` would come back, and be rendered and sent,
    in another order. Webhook receivers compare and sign bytes; templates and event payloads must
    go out as they came in. Values are any JSON value (a text template is a JSON string). No JSON
    lookups are offered (none are needed).
    """

    def from_db_value(self, value, expression, connection):
        if value is None:
            return value
        if isinstance(value, str):
            return json.loads(value)
        return value  # already decoded (a driver returning json)

    def to_python(self, value):
        return value

    def get_prep_value(self, value):
        if value is None:
            return None
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))

    def value_to_string(self, obj):
        return json.dumps(self.value_from_object(obj), ensure_ascii=False)

    def formfield(self, **kwargs):
        from django import forms

        return super().formfield(**{"form_class": forms.JSONField, **kwargs})
