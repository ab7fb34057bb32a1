"""Alert API: ``/alert-rules`` (list, read, create, edit, delete the stored rules) and ``/alerts``
(what fired, with its values). Reading needs the ``read`` scope; changing rules needs ``*``
(an admin key), because a rule decides whom the service mails and when autoscalers scale."""
import django_filters
from django.db.models import Count, Q
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.response import Response

from analytics.alert_serializers import AlertRuleSerializer, AlertSerializer
from analytics.alerts import services as alert_services
from analytics.models import Alert, AlertRule
from vocelio_webhooks import services as audit_services
from vocelio_webhooks.audit import snapshot
from vocelio_webhooks.models import Scope
from vocelio_webhooks.permissions import (
    AllEnvironmentsForWrites,
    HasScope,
    key_environments,
)

_ID_OR_NAME = OpenApiParameter("id", str, OpenApiParameter.PATH, description="Rule id or name.")


@extend_schema_view(retrieve=extend_schema(parameters=[_ID_OR_NAME]),
                    update=extend_schema(parameters=[_ID_OR_NAME]),
                    partial_update=extend_schema(parameters=[_ID_OR_NAME]),
                    destroy=extend_schema(parameters=[_ID_OR_NAME]))
class AlertRuleViewSet(viewsets.ModelViewSet):
    """``GET/POST /alert-rules``, ``GET/PUT/PATCH/DELETE /alert-rules/{id or name}``."""

    queryset = AlertRule.objects.annotate(
        firing_count=Count("alerts", filter=Q(alerts__status=Alert.Status.FIRING))
    ).order_by("name")  # Meta.ordering does not apply to aggregating queries
    serializer_class = AlertRuleSerializer
    filterset_fields = ["metric", "action", "enabled"]
    lookup_value_regex = r"[A-Za-z0-9_-]+"
    permission_classes = [HasScope, AllEnvironmentsForWrites]
    required_scopes = [Scope.ALL.value]

    def get_object(self) -> AlertRule:
        key = self.kwargs[self.lookup_field]
        rule = get_object_or_404(self.get_queryset(), **({"pk": key} if key.isdigit() else {"name": key}))
        self.check_object_permissions(self.request, rule)
        return rule

    def create(self, request):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        rule = alert_services.create_rule(**serializer.validated_data)
        audit_services.record_audit(request=request, action="create", obj=rule)
        return Response(self.get_serializer(rule).data, status=status.HTTP_201_CREATED)

    def update(self, request, *args, partial: bool = False, **kwargs):
        rule = self.get_object()
        serializer = self.get_serializer(rule, data=request.data, partial=partial)
        serializer.is_valid(raise_exception=True)
        before = snapshot(rule)
        rule = alert_services.update_rule(rule=rule, **serializer.validated_data)
        audit_services.record_audit(request=request, action="update", obj=rule, before=before)
        # Read again: the edit may have resolved alerts, and firing_count is an annotation.
        return Response(self.get_serializer(self.get_queryset().get(pk=rule.pk)).data)

    def destroy(self, request, *args, **kwargs):
        rule = self.get_object()
        rule_id = rule.pk
        alert_services.delete_rule(rule=rule)
        audit_services.record_audit(request=request, action="delete", obj=rule, object_id=rule_id)
        return Response(status=status.HTTP_204_NO_CONTENT)


class AlertFilterSet(django_filters.FilterSet):
    """``?status=firing&rule=<name>&endpoint=<id>``. ``rule`` matches the rule's current name or
    the name the alert recorded (a renamed or deleted rule's history stays findable)."""

    rule = django_filters.CharFilter(method="filter_rule")

    class Meta:
        model = Alert
        fields = ["status", "rule", "endpoint"]

    def filter_rule(self, queryset, name, value):
        return queryset.filter(Q(rule__name=value) | Q(rule_name=value))


class AlertViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """``GET /alerts`` (newest first) and ``GET /alerts/{id}``. Pending alerts (a gauge not yet
    above its threshold for the whole period) are listed too. An environment-limited key sees
    service-wide alerts and those about endpoints of its environments."""

    queryset = Alert.objects.select_related("rule", "endpoint")
    serializer_class = AlertSerializer
    filterset_class = AlertFilterSet

    def get_queryset(self):
        queryset = super().get_queryset()
        allowed = key_environments(self.request)
        if allowed:
            queryset = queryset.filter(Q(scope_key=Alert.GLOBAL_SCOPE) | Q(endpoint__environment__in=allowed))
        return queryset
