"""API shapes for the audit log."""
from rest_framework import serializers

from .models import AuditLogEntry


class AuditLogEntrySerializer(serializers.ModelSerializer):
    class Meta:
        model = AuditLogEntry
        fields = ["id", "occurred_at", "actor", "action", "object_type", "object_id", "object_repr", "changes",
                  "environment", "request_id", "ip_address"]
        read_only_fields = fields
