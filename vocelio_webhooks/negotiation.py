"""Content negotiation for the API: answer JSON whatever the ``Accept`` header says."""
from rest_framework.exceptions import NotAcceptable
from rest_framework.negotiation import DefaultContentNegotiation


class FallbackToFirstRenderer(DefaultContentNegotiation):
    """DRF's negotiation, except that an ``Accept`` header none of the view's renderers satisfies
    gets the first renderer (JSON for the API) instead of 406 ``NOT_ACCEPTABLE``.

    The API renders JSON only (``DEFAULT_RENDERER_CLASSES``): a client sending a browser's
    ``Accept: text/html`` or a stray ``application/xml`` still gets the JSON it can parse, as
    Stripe's API does. Views with several renderers (the OpenAPI schema's JSON and YAML) still pick
    the one ``Accept`` asks for. An unknown ``?format=`` stays a 404, as in DRF.
    """

    def select_renderer(self, request, renderers, format_suffix=None):
        try:
            return super().select_renderer(request, renderers, format_suffix)
        except NotAcceptable:
            format_ = format_suffix or request.query_params.get(self.settings.URL_FORMAT_OVERRIDE)
            if format_:  # a ?format= that matched a renderer (an unknown one was a 404 above) wins
                renderers = self.filter_renderers(renderers, format_)
            return renderers[0], renderers[0].media_type
