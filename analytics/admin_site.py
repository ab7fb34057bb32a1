"""The project's admin site: Django's own, plus the delivery dashboard at ``/admin/dashboard/``
linked from the index page.

Installed through ``AdminConfig.default_site`` (Django's documented way to replace the default
site), so every ``@admin.register`` in the apps keeps working unchanged. This module is imported
while ``INSTALLED_APPS`` is read, before models are ready: it must not import models at module level.
"""
from django.contrib import admin
from django.contrib.admin.apps import AdminConfig
from django.urls import path


class VocelioAdminSite(admin.AdminSite):
    """Django's admin site with a staff-only dashboard view and an index linking to it."""

    site_header = "Vocelio Webhooks administration"
    site_title = "Vocelio Webhooks admin"
    index_title = "Deliveries, endpoints and events"
    index_template = "admin/analytics/index.html"

    def get_urls(self):
        from analytics.admin import dashboard_view

        return [path("dashboard/", self.admin_view(dashboard_view), name="dashboard"), *super().get_urls()]


class VocelioAdminConfig(AdminConfig):
    """Replaces ``django.contrib.admin`` in ``INSTALLED_APPS`` (same label, same autodiscovery)."""

    default_site = "analytics.admin_site.VocelioAdminSite"
