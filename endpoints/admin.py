from django import forms
from django.contrib import admin

from endpoints.models import WebhookEndpoint
from vocelio_webhooks.crypto import mask


class EndpointAdminForm(forms.ModelForm):
    """Secrets are write-only: the form shows them masked and keeps the stored value unless a
    new one is typed."""

    secret = forms.CharField(required=False, widget=forms.PasswordInput(render_value=False),
                             help_text="Leave empty to keep the current secret.")
    api_key = forms.CharField(required=False, widget=forms.PasswordInput(render_value=False),
                              help_text="Leave empty to keep the current API key.")

    class Meta:
        model = WebhookEndpoint
        fields = "__all__"

    def clean_secret(self):
        return self.cleaned_data["secret"] or (self.instance.secret if self.instance.pk else "")

    def clean_api_key(self):
        return self.cleaned_data["api_key"] or (self.instance.api_key if self.instance.pk else "")


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    form = EndpointAdminForm
    list_display = ("name", "url", "environment", "status", "signature_method", "secret_hint", "updated_at")
    list_filter = ("status", "environment", "signature_method", "http_method")
    search_fields = ("name", "url", "owner_email")
    date_hierarchy = "created_at"

    @admin.display(description="secret")
    def secret_hint(self, obj: WebhookEndpoint) -> str:
        return mask(obj.secret)
