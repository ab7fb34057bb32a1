"""API shapes for payload templates. Input and output differ (HackSoft): inputs carry a ``note``
for the version they create; outputs nest the current version."""
from rest_framework import serializers

from templates_app.models import TEMPLATE_NAME_RE, PayloadTemplate, TemplateVersion
from vocelio_webhooks.validators import reject_control_characters


class TemplateVersionSerializer(serializers.ModelSerializer):
    class Meta:
        model = TemplateVersion
        fields = ["number", "form", "body", "content_type", "header_templates", "author", "note", "restored_from",
                  "created_at"]
        read_only_fields = fields


class TemplateSerializer(serializers.ModelSerializer):
    current_version = TemplateVersionSerializer(read_only=True)
    version_count = serializers.SerializerMethodField()

    class Meta:
        model = PayloadTemplate
        fields = ["id", "name", "description", "current_version", "version_count", "created_at", "updated_at"]
        read_only_fields = fields

    def get_version_count(self, template: PayloadTemplate) -> int:
        return template.current_version.number if template.current_version else 0


class _ContentFields(serializers.Serializer):
    description = serializers.CharField(max_length=500, required=False, allow_blank=True,
                                        validators=[reject_control_characters])
    form = serializers.ChoiceField(choices=TemplateVersion.Form.choices)
    body = serializers.JSONField(help_text="json form: an object or array whose string values are Jinja2; "
                                           "text form: one Jinja2 string.")
    content_type = serializers.CharField(max_length=255, required=False, allow_null=True, allow_blank=True,
                                         help_text="Default application/json (json form); required for text form.")
    header_templates = serializers.DictField(child=serializers.CharField(allow_blank=True, trim_whitespace=False),
                                             required=False)
    note = serializers.CharField(max_length=500, required=False, allow_blank=True,
                                 validators=[reject_control_characters],
                                 help_text="Why this version was made; kept in the version history.")


class TemplateCreateSerializer(_ContentFields):
    """``POST /templates``."""

    name = serializers.RegexField(TEMPLATE_NAME_RE, max_length=100,
                                  error_messages={"invalid": "Use lowercase letters, digits, '_' and '-', "
                                                             "starting with a letter."})


class TemplateUpdateSerializer(_ContentFields):
    """``PUT``/``PATCH /templates/{id}``: a content change creates a new version. ``name`` cannot
    change (endpoints refer to templates by name); sending the same name is accepted."""

    name = serializers.CharField(max_length=100, required=False)

    def validate_name(self, value: str) -> str:
        if self.instance is not None and value != self.instance.name:
            raise serializers.ValidationError("A template cannot be renamed.")
        return value


class RollbackInputSerializer(serializers.Serializer):
    version = serializers.IntegerField(min_value=1)
    note = serializers.CharField(max_length=500, required=False, allow_blank=True,
                                 validators=[reject_control_characters])


class TemplateTestInputSerializer(serializers.Serializer):
    """``POST /templates/{id}/test``: everything optional."""

    event_type = serializers.CharField(max_length=100, required=False)
    data = serializers.DictField(required=False, help_text="Default: the event type's sample_data.")
    metadata = serializers.DictField(required=False)
    event_id = serializers.CharField(max_length=255, required=False)
    timestamp = serializers.DateTimeField(required=False)
    version = serializers.IntegerField(min_value=1, required=False, help_text="Default: the current version.")


class TemplateTestOutputSerializer(serializers.Serializer):
    output = serializers.JSONField(help_text="The rendered JSON value (json form) or text (text form).")
    content_type = serializers.CharField()
    headers = serializers.DictField(child=serializers.CharField())
