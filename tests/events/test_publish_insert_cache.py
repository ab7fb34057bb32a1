"""The publish path's cached event INSERT (``events.services._event_insert_sql``): the same text
and parameters as Django's own compile, and a safe fallback when the text cannot be reused (a
field whose value compiles to SQL, such as a ``db_default``'s ``DEFAULT`` on PostgreSQL)."""
import pytest
from django.db.models import Value
from django.utils import timezone

from events import services as event_services
from events.models import Event, EventType


def _event(**fields) -> Event:
    values = {"event_id": "evt_cache", "event_type": EventType.objects.get(name="lead.created"),
              "timestamp": timezone.now(), "data": {"b": 1, "a": [1, "é"]}, "metadata": {},
              "environment": "production", **fields}
    return Event(**values)


@pytest.mark.django_db
def test_cached_event_insert_is_what_django_compiles(event_types):
    # given
    event = _event()

    # when
    cached_sql, cached_params = event_services._event_insert_sql(event)
    full_sql, full_params = event_services._compile_event_insert(event)

    # then
    assert cached_sql == full_sql
    assert cached_sql.count("%s") == len(cached_params) == len(full_params)
    # received_at is auto_now_add: each compile sets it anew, so it is left out
    for field, cached, full in zip(event_services._event_fields(), cached_params, full_params, strict=True):
        if field.name != "received_at":
            assert str(cached) == str(full), field.name


@pytest.mark.django_db
def test_cached_event_insert_falls_back_when_a_field_compiles_to_sql(event_types, monkeypatch):
    # given: a model change gives a field publish always sets a db_default (simulated on 'environment')
    field = Event._meta.get_field("environment")
    monkeypatch.setattr(field, "db_default", Value("production"))
    for cached in ("_get_default", "_db_default_expression"):
        field.__dict__.pop(cached, None)
    event_services._event_insert_text.cache_clear()
    try:
        # when
        sql, params = event_services._event_insert_sql(_event(environment="staging"))

        # then: one placeholder per parameter, whatever the database compiles the default to
        assert sql.count("%s") == len(params)
        assert "staging" in [str(p) for p in params]
    finally:
        for cached in ("_get_default", "_db_default_expression"):
            field.__dict__.pop(cached, None)
        event_services._event_insert_text.cache_clear()
