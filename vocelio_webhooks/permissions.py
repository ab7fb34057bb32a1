"""Who may call what (issue 5, "Who may do what"): API key scopes and environment limits.

* ``HasScope`` (the default permission class) lets a request through when its key holds the
  scopes the request needs: safe methods (GET, HEAD, OPTIONS) need ``read``; other methods need
  what the view declares in ``required_scopes`` (a list, or a dict of view action → list with
  a ``"default"``). A key with ``*`` may do everything; a write to a view that declares nothing
  is refused to every other key (fail closed).
* Environment limits: ``KeyEnvironmentFilter`` (a default filter backend) narrows every
  queryset of an environment-bound model to the key's environments, so lists are filtered and
  an object of another environment answers 404 as if it did not exist. Writes that *name* an
  environment are checked by ``PublishEnvironmentAllowed`` / ``EndpointEnvironmentAllowed``
  (403); views that look objects up themselves use ``object_in_key_environments(...)``.
"""
from collections.abc import Sequence

from django.apps import apps
from django.conf import settings
from rest_framework import exceptions
from rest_framework.filters import BaseFilterBackend
from rest_framework.permissions import SAFE_METHODS, BasePermission

from .errors import Forbidden
from .models import ENVIRONMENT_PATHS, SCOPE_ALIASES, Scope


def required_scopes_for(request, view) -> tuple[str, ...] | None:
    """The scopes ``request`` needs on ``view``: ``("read",)`` for safe methods, else the view's
    ``required_scopes`` (for its current ``action`` when it is a dict); ``None`` when the view
    declares nothing."""
    if request.method in SAFE_METHODS:
        return (Scope.READ.value,)
    declared = getattr(view, "required_scopes", None)
    if isinstance(declared, dict):
        declared = declared.get(getattr(view, "action", None), declared.get("default"))
    if declared is None:
        return None
    return (declared,) if isinstance(declared, str) else tuple(declared)


def key_environments(request) -> tuple[str, ...]:
    """The environments the caller's API key is limited to; empty when it is not limited."""
    return tuple(getattr(request.user, "environments", None) or ())


def restrict_to_key_environments(queryset, request):
    """``queryset`` narrowed to the caller's environments when the key is limited and the model
    is environment-bound (``ENVIRONMENT_PATHS``); unchanged otherwise. Views with their own
    querysets (analytics, say) call this to honour environment limits."""
    allowed = key_environments(request)
    path = ENVIRONMENT_PATHS.get(queryset.model._meta.label_lower)
    if not allowed or path is None:
        return queryset
    return queryset.filter(**{f"{path}__in": allowed})


class HasScope(BasePermission):
    """The request's API key holds every scope the request needs (``required_scopes_for``).

    Unauthenticated requests are refused with 401; a missing scope with 403
    ``INSUFFICIENT_SCOPE`` whose details list the required and the granted scopes.
    """

    def has_permission(self, request, view) -> bool:
        principal = request.user
        if principal is None or not getattr(principal, "is_authenticated", False):
            return False
        granted = {SCOPE_ALIASES.get(scope, scope) for scope in getattr(principal, "scopes", ()) or ()}
        if Scope.ALL.value in granted:
            return True
        needed = required_scopes_for(request, view)
        missing = ["*"] if needed is None else [scope for scope in needed if scope not in granted]
        if missing:
            raise Forbidden(
                f"This API key lacks the scope{'s' if len(missing) > 1 else ''} {', '.join(missing)}.",
                code="INSUFFICIENT_SCOPE",
                details={"required_scopes": list(needed or ["*"]), "key_scopes": sorted(granted)},
            )
        return True


class KeyEnvironmentFilter(BaseFilterBackend):
    """Default filter backend: environment-limited keys see only their environments' rows
    (lists, and ``get_object`` for retrieve/update/delete/actions, which then answer 404)."""

    def filter_queryset(self, request, queryset, view):
        return restrict_to_key_environments(queryset, request)


class _RequestedEnvironmentAllowed(BasePermission):
    """A write may only name (or imply) an environment the key is limited to; else 403
    ``ENVIRONMENT_FORBIDDEN``. Checked for plain views and for the viewset actions below."""

    checked_actions = frozenset({"create", "update", "partial_update"})

    def default_environment(self) -> str:
        raise NotImplementedError

    def has_permission(self, request, view) -> bool:
        allowed = key_environments(request)
        if not allowed or request.method in SAFE_METHODS:
            return True
        action = getattr(view, "action", None)
        if action is not None and action not in self.checked_actions:
            return True
        data = request.data if isinstance(request.data, dict) else {}
        requested = data.get("environment")
        if requested is None and action in (None, "create"):
            requested = self.default_environment()
        if requested is not None and requested not in allowed:
            raise Forbidden(
                f"This API key is limited to the environments {', '.join(allowed)}; "
                f"it cannot write to {requested!s}.",
                code="ENVIRONMENT_FORBIDDEN",
                details={"environment": str(requested), "key_environments": list(allowed)},
            )
        return True


class PublishEnvironmentAllowed(_RequestedEnvironmentAllowed):
    """``POST /events/publish``: the event's ``environment`` (default
    ``WEBHOOK_DEFAULT_ENVIRONMENT``) must be one of the key's."""

    def default_environment(self) -> str:
        return settings.WEBHOOK_DEFAULT_ENVIRONMENT


class EndpointEnvironmentAllowed(_RequestedEnvironmentAllowed):
    """Endpoint create/update and unsaved test sends: the endpoint's ``environment`` (default:
    the model's, ``production``) must be one of the key's."""

    def default_environment(self) -> str:
        return apps.get_model("endpoints", "WebhookEndpoint")._meta.get_field("environment").get_default()


class AllEnvironmentsForWrites(BasePermission):
    """Resources shared by every environment (templates): an environment-limited key may read
    them but not change or test-render them (403 ``ENVIRONMENT_FORBIDDEN``), because a change
    would reach the other environments' endpoints too."""

    def has_permission(self, request, view) -> bool:
        allowed = key_environments(request)
        if not allowed or request.method in SAFE_METHODS:
            return True
        raise Forbidden(
            "This resource is shared by every environment; changing it needs a key without an environment limit.",
            code="ENVIRONMENT_FORBIDDEN", details={"key_environments": list(allowed)},
        )


def object_in_key_environments(model_label: str, lookup_kwarg: str = "pk") -> type[BasePermission]:
    """A permission class for views that fetch ``model_label`` (``"app.Model"``) by the URL
    kwarg ``lookup_kwarg`` themselves: an object outside the key's environments answers 404,
    exactly like a missing one."""

    class ObjectInKeyEnvironments(BasePermission):
        def has_permission(self, request, view) -> bool:
            allowed = key_environments(request)
            if not allowed:
                return True
            model = apps.get_model(model_label)
            path = ENVIRONMENT_PATHS[model._meta.label_lower]
            pk = view.kwargs.get(lookup_kwarg)
            if model._default_manager.filter(pk=pk).exclude(**{f"{path}__in": allowed}).exists():
                raise exceptions.NotFound()
            return True

    ObjectInKeyEnvironments.__name__ = f"{model_label.split('.')[-1]}InKeyEnvironments"
    return ObjectInKeyEnvironments


def declared_scopes(view_class) -> Sequence[str]:
    """Every scope a view class declares (for checks and tests)."""
    declared = getattr(view_class, "required_scopes", None) or ()
    if isinstance(declared, dict):
        return [scope for value in declared.values() for scope in ((value,) if isinstance(value, str) else value)]
    return (declared,) if isinstance(declared, str) else tuple(declared)
