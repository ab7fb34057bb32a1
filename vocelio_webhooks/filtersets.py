"""django-filter classes for the audit log API, and the strict base every API filterset uses.

A filter value the API cannot understand is 400 ``VALIDATION_ERROR`` naming the parameter in
``details.fields`` (as ``?status=bogus`` always was: django-filter's choice fields refuse it and
``DjangoFilterBackend`` raises), never a silently ignored filter: ``?is_replay=maybe`` listed
every delivery, replays or not, and ``?action=nope`` an empty page, both with 200.
"""
import django_filters
from django import forms
from django.core.exceptions import ValidationError
from django.db import models
from django_filters import filterset
from django_filters.rest_framework import DjangoFilterBackend

from .models import AuditLogEntry


class StrictBooleanField(forms.Field):
    """``true``/``false`` (also ``1``/``0``; any letter case); empty or absent is no filter;
    anything else is a validation error. Django's ``NullBooleanField`` (django-filter's default
    for a ``BooleanField``) reads every unknown value as "no filter"."""

    widget = forms.TextInput

    def to_python(self, value):
        if value in (None, ""):
            return None
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("true", "1"):
            return True
        if text in ("false", "0"):
            return False
        raise ValidationError("Must be true or false.", code="invalid")


class StrictBooleanFilter(django_filters.BooleanFilter):
    field_class = StrictBooleanField


FILTER_DEFAULTS = {
    **filterset.FILTER_FOR_DBFIELD_DEFAULTS,
    models.BooleanField: {"filter_class": StrictBooleanFilter},
    models.NullBooleanField: {"filter_class": StrictBooleanFilter},
}


class StrictFilterSet(django_filters.FilterSet):
    """The base of the API's filtersets: a model ``BooleanField`` is filtered by
    ``StrictBooleanFilter``; choice fields already refuse unknown values (``ChoiceFilter``)."""

    FILTER_DEFAULTS = FILTER_DEFAULTS


class FilterBackend(DjangoFilterBackend):
    """``DjangoFilterBackend`` whose filtersets built from a view's ``filterset_fields`` derive
    from ``StrictFilterSet`` too (``settings.REST_FRAMEWORK["DEFAULT_FILTER_BACKENDS"]``)."""

    filterset_base = StrictFilterSet


# Every action record_audit is called with: AuditLogEntry.Action, and two recorded by name
# (endpoints/admin.py's test send, the purge command), which the model's list lacks.
AUDIT_ACTIONS = [*AuditLogEntry.Action.choices, ("test_send", "Test send"), ("purge", "Purge")]


class AuditLogFilterSet(StrictFilterSet):
    """``actor``, ``action`` (one of ``AUDIT_ACTIONS``, else 400), ``object_type``,
    ``object_id`` (exact) and the time range ``occurred_after`` (inclusive) /
    ``occurred_before`` (exclusive), ISO-8601."""

    action = django_filters.ChoiceFilter(choices=AUDIT_ACTIONS)
    occurred_after = django_filters.IsoDateTimeFilter(field_name="occurred_at", lookup_expr="gte")
    occurred_before = django_filters.IsoDateTimeFilter(field_name="occurred_at", lookup_expr="lt")

    class Meta:
        model = AuditLogEntry
        fields = ["actor", "action", "object_type", "object_id", "occurred_after", "occurred_before"]
