"""django-filter classes for the audit log API."""
import django_filters

from .models import AuditLogEntry


class AuditLogFilterSet(django_filters.FilterSet):
    """``actor``, ``action``, ``object_type``, ``object_id`` (exact) and the time range
    ``occurred_after`` (inclusive) / ``occurred_before`` (exclusive), ISO-8601."""

    occurred_after = django_filters.IsoDateTimeFilter(field_name="occurred_at", lookup_expr="gte")
    occurred_before = django_filters.IsoDateTimeFilter(field_name="occurred_at", lookup_expr="lt")

    class Meta:
        model = AuditLogEntry
        fields = ["actor", "action", "object_type", "object_id", "occurred_after", "occurred_before"]
