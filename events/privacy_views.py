"""``POST /privacy/erase``: the API form of ``manage.py erase_subject`` (GDPR article 17, CCPA
right to delete)."""
import logging

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from events import privacy
from vocelio_webhooks.errors import Forbidden

logger = logging.getLogger(__name__)


class EraseSubjectInputSerializer(serializers.Serializer):
    email = serializers.CharField(required=False, allow_blank=True, max_length=254)
    phone = serializers.CharField(required=False, allow_blank=True, max_length=64)
    dry_run = serializers.BooleanField(required=False, default=False)


_TABLE = {"scanned": serializers.IntegerField(), "matched": serializers.IntegerField(),
          "values_redacted": serializers.IntegerField()}


class EraseSubjectView(APIView):
    """Redact one person's email/phone, and the personal fields beside them, in every stored event
    and delivery attempt; answers 200 with what changed (``dry_run: true`` changes nothing).

    Declares no ``required_scopes``, so only a key with every scope (``*``) may call it, and a key
    limited to some environments may not (an erasure reaches every environment).
    """

    @extend_schema(
        request=EraseSubjectInputSerializer,
        responses={200: inline_serializer("ErasureReport", {
            "dry_run": serializers.BooleanField(),
            "events": inline_serializer("ErasureEvents", {**_TABLE, "event_ids": serializers.ListField()}),
            "attempts": inline_serializer("ErasureAttempts", {**_TABLE, "attempt_ids": serializers.ListField()}),
        })},
    )
    def post(self, request):
        if getattr(request.user, "environments", None):
            raise Forbidden("An erasure reaches every environment; use a key without an environment limit.",
                            code="ENVIRONMENT_FORBIDDEN", details={"key_environments": list(request.user.environments)})
        serializer = EraseSubjectInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        report = privacy.erase_subject(**serializer.validated_data)
        logger.info("privacy erase by %s: dry_run=%s events=%s attempts=%s values=%s", request.user,
                    report.dry_run, report.events.matched, report.attempts.matched,
                    report.events.values_redacted + report.attempts.values_redacted)
        return Response(report.as_dict())
