"""Template routes, included at the root: ``path("", include("templates_app.urls"))``."""
from rest_framework.routers import SimpleRouter

from templates_app.views import TemplateViewSet

router = SimpleRouter(trailing_slash=False)
router.register("templates", TemplateViewSet, basename="template")

urlpatterns = router.urls
