"""Analytics and alerting routes, included at the root: ``path("", include("analytics.urls"))``."""
from django.urls import path
from rest_framework.routers import SimpleRouter

from analytics.alert_views import AlertRuleViewSet, AlertViewSet
from analytics.views import AnalyticsOverviewView, AnalyticsTrendsView

# Alert rules and alerts (analytics/alert_views.py).
_alert_router = SimpleRouter(trailing_slash=False)
_alert_router.register("alert-rules", AlertRuleViewSet, basename="alert-rule")
_alert_router.register("alerts", AlertViewSet, basename="alert")

urlpatterns = [
    path("analytics/overview", AnalyticsOverviewView.as_view(), name="analytics-overview"),
    path("analytics/trends", AnalyticsTrendsView.as_view(), name="analytics-trends"),
    *_alert_router.urls,
]
