"""Analytics and monitoring routes, included at the root: ``path("", include("analytics.urls"))``."""
from django.urls import path  # noqa: F401

urlpatterns: list = []
