"""Audit log API: ``GET /audit-log`` and ``GET /audit-log/{id}`` (scope ``read``)."""
from rest_framework import mixins, viewsets

from .filtersets import AuditLogFilterSet
from .models import AuditLogEntry
from .serializers import AuditLogEntrySerializer


class AuditLogViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Newest first; filters ``actor``, ``action``, ``object_type``, ``object_id``,
    ``occurred_after``, ``occurred_before``. Environment-limited keys see only entries about
    objects of their environments."""

    queryset = AuditLogEntry.objects.all()
    serializer_class = AuditLogEntrySerializer
    filterset_class = AuditLogFilterSet
