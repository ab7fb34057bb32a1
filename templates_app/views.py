"""Template API (the seed's "Template Management" routes plus versions and rollback). A template
is addressed by id or by name (``/templates/7`` or ``/templates/salesforce_lead_template``)."""
from django.db import transaction
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from templates_app import services as template_services
from templates_app.models import PayloadTemplate
from templates_app.serializers import (
    RollbackInputSerializer,
    TemplateCreateSerializer,
    TemplateSerializer,
    TemplateTestInputSerializer,
    TemplateTestOutputSerializer,
    TemplateUpdateSerializer,
    TemplateVersionSerializer,
)
from vocelio_webhooks import services as audit_services
from vocelio_webhooks.audit import snapshot
from vocelio_webhooks.permissions import AllEnvironmentsForWrites, HasScope

_ID_OR_NAME = OpenApiParameter("id", str, OpenApiParameter.PATH, description="Template id or name.")


@extend_schema_view(retrieve=extend_schema(parameters=[_ID_OR_NAME]))
class TemplateViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """``GET/POST /templates``, ``GET/PUT/PATCH /templates/{id}``, ``GET /templates/{id}/versions``,
    ``POST /templates/{id}/rollback`` and ``POST /templates/{id}/test``."""

    queryset = PayloadTemplate.objects.select_related("current_version")
    serializer_class = TemplateSerializer
    filterset_fields = ["name"]
    lookup_value_regex = r"[A-Za-z0-9_-]+"
    permission_classes = [HasScope, AllEnvironmentsForWrites]
    required_scopes = ["endpoints:manage"]

    def get_object(self) -> PayloadTemplate:
        key = self.kwargs[self.lookup_field]
        template = get_object_or_404(self.get_queryset(), **({"pk": key} if key.isdigit() else {"name": key}))
        self.check_object_permissions(self.request, template)
        return template

    @extend_schema(request=TemplateCreateSerializer, responses={201: TemplateSerializer})
    @transaction.atomic  # the change and its audit entry: both or neither
    def create(self, request):
        serializer = TemplateCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        template = template_services.create_template(**serializer.validated_data, author=str(request.user))
        audit_services.record_audit(request=request, action="create", obj=template)
        return Response(TemplateSerializer(template).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=TemplateUpdateSerializer, responses=TemplateSerializer, parameters=[_ID_OR_NAME])
    @transaction.atomic  # the change and its audit entry: both or neither
    def update(self, request, pk=None, partial: bool = False):
        template = self.get_object()
        serializer = TemplateUpdateSerializer(template, data=request.data, partial=partial)
        serializer.is_valid(raise_exception=True)
        fields = {key: value for key, value in serializer.validated_data.items() if key != "name"}
        before = snapshot(template)
        template = template_services.update_template(template=template, **fields, author=str(request.user))
        audit_services.record_audit(request=request, action="update", obj=template, before=before)
        return Response(TemplateSerializer(template).data)

    @extend_schema(request=TemplateUpdateSerializer, responses=TemplateSerializer, parameters=[_ID_OR_NAME])
    def partial_update(self, request, pk=None):
        return self.update(request, pk=pk, partial=True)

    @extend_schema(responses=TemplateVersionSerializer(many=True), parameters=[_ID_OR_NAME])
    @action(detail=True, methods=["get"], filter_backends=[])
    def versions(self, request, pk=None):
        queryset = self.get_object().versions.order_by("-number")
        page = self.paginate_queryset(queryset)
        return self.get_paginated_response(TemplateVersionSerializer(page, many=True).data)

    @extend_schema(request=RollbackInputSerializer, responses=TemplateSerializer, parameters=[_ID_OR_NAME])
    @action(detail=True, methods=["post"])
    @transaction.atomic  # the change and its audit entry: both or neither
    def rollback(self, request, pk=None):
        serializer = RollbackInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        before = snapshot(self.get_object())
        template = template_services.rollback(
            template=self.get_object(), version_number=serializer.validated_data["version"],
            author=str(request.user), note=serializer.validated_data.get("note", ""),
        )
        audit_services.record_audit(request=request, action="update", obj=template, before=before)
        return Response(TemplateSerializer(template).data)

    @extend_schema(request=TemplateTestInputSerializer, responses=TemplateTestOutputSerializer,
                   parameters=[_ID_OR_NAME])
    @action(detail=True, methods=["post"], url_path="test", url_name="test")
    def render_test(self, request, pk=None):
        serializer = TemplateTestInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        options = dict(serializer.validated_data)
        if "version" in options:
            options["version_number"] = options.pop("version")
        rendered = template_services.render_preview(template=self.get_object(), **options)
        return Response({"output": rendered.output, "content_type": rendered.content_type,
                         "headers": rendered.headers})
