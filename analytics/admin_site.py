"""The project's admin site: Django's own, plus the delivery dashboard at ``/admin/dashboard/``
linked from the index page.

Installed through ``AdminConfig.default_site`` (Django's documented way to replace the default
site), so every ``@admin.register`` in the apps keeps working unchanged. This module is imported
while ``INSTALLED_APPS`` is read, before models are ready: it must not import models at module level.
"""
from django.contrib import admin, messages
from django.contrib.admin.apps import AdminConfig
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import ValidationError
from django.http import HttpResponseRedirect
from django.urls import path


class CheckedChangeList(ChangeList):
    """Django's change list, with query-string values it cannot turn into a query treated as bad
    filters rather than server errors.

    Django builds ``datetime(year, month, day)`` from the ``date_hierarchy`` parameters and adds a
    day, a month or a year to it (``?created_at__year=99999999999`` → ``OverflowError``;
    ``…__year=9999&…__month=12&…__day=31`` → overflow of the end date), and a ``__year`` lookup on
    any date field is turned into bounds only when the query is compiled (``?updated_at__year=0`` →
    ``ValueError``). Both are raised as ``IncorrectLookupParameters``, which Django's changelist
    view already answers for every other bad filter: a redirect to the unfiltered list (``?e=1``);
    so is a value holding a NUL character, which PostgreSQL refuses in any text parameter.
    """

    def get_filters(self, request):
        # PostgreSQL refuses a NUL character in any text parameter (a DataError, so a 500 on every
        # list filtered on a text field, ``?status__exact=%00``): no stored value can hold one.
        if any("\x00" in value for _, values in request.GET.lists() for value in values):
            raise IncorrectLookupParameters("A filter value contains a NUL character.")
        try:
            return super().get_filters(request)
        except (OverflowError, ValueError) as exc:
            raise IncorrectLookupParameters(exc) from exc

    def get_results(self, request):
        try:
            super().get_results(request)
        except (OverflowError, ValueError) as exc:
            raise IncorrectLookupParameters(exc) from exc


class CheckedChangelistMixin:
    """Mixed into every ModelAdmin by ``VocelioAdminSite.register``: bad query-string filters and
    bad selected ids are answered like any other bad input, not with a server error.

    - Filters: ``CheckedChangeList``.
    - Actions: Django filters the queryset with ``pk__in=<the posted _selected_action values>``,
      and a value that is not a primary key (``abc``) raises ``ValueError`` there, for every action
      including "delete selected". Such a post changes nothing: the list is shown again with an
      error message, as Django does when nothing is selected.
    """

    def get_changelist(self, request, **kwargs):
        return CheckedChangeList

    def response_action(self, request, queryset):
        pk_field = self.model._meta.pk
        invalid = []
        for value in request.POST.getlist(ACTION_CHECKBOX_NAME):
            try:
                # The field's own validators hold the database's integer range (2**63 would overflow).
                pk_field.run_validators(pk_field.to_python(value))
            except ValidationError:
                invalid.append(value)
        if invalid:
            self.message_user(request, f"Not a valid id: {', '.join(repr(v[:40]) for v in invalid[:5])}. "
                                       "No items have been changed.", messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())
        return super().response_action(request, queryset)


class VocelioAdminSite(admin.AdminSite):
    """Django's admin site with a staff-only dashboard view and an index linking to it."""

    site_header = "Vocelio Webhooks administration"
    site_title = "Vocelio Webhooks admin"
    index_title = "Deliveries, endpoints and events"
    index_template = "admin/analytics/index.html"

    def register(self, model_or_iterable, admin_class=None, **options):
        """Every ModelAdmin registered here, ours and third-party ones (django-celery-beat, auth),
        gets ``CheckedChangelistMixin``: an out-of-range date drill-down or
        a selected id that is not a key is a bad request shown as such, never a server error."""
        admin_class = admin_class or admin.ModelAdmin
        if not issubclass(admin_class, CheckedChangelistMixin):
            admin_class = type(admin_class.__name__, (CheckedChangelistMixin, admin_class),
                               {"__module__": admin_class.__module__, "__doc__": admin_class.__doc__})
        return super().register(model_or_iterable, admin_class, **options)

    def get_urls(self):
        from analytics.admin import dashboard_view

        return [path("dashboard/", self.admin_view(dashboard_view), name="dashboard"), *super().get_urls()]


class VocelioAdminConfig(AdminConfig):
    """Replaces ``django.contrib.admin`` in ``INSTALLED_APPS`` (same label, same autodiscovery)."""

    default_site = "analytics.admin_site.VocelioAdminSite"
