"""Staff manage webhook endpoints (URL, events, active, a write-only secret) and see every
delivery with its attempts, with a "Redeliver" action (docs/webhooks.md). The secret is
encrypted before it is saved and never shown again, in a page or otherwise."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext

from conversations.admin.common import ReadOnlyAdminMixin
from conversations.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from conversations.services import webhooks
from conversations.services.errors import InvalidInput


class WebhookEndpointForm(forms.ModelForm):
    events = forms.MultipleChoiceField(
        label=gettext_lazy("Events"), widget=forms.CheckboxSelectMultiple,
        choices=[(e, e) for e in webhooks.EVENTS])
    # Write-only: rendered empty, and an empty value on a change keeps the current secret.
    new_secret = forms.CharField(
        label=gettext_lazy("New secret"), required=False, strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text=gettext_lazy("Stored encrypted and never shown again. Leave empty to keep the "
                               "current secret."))

    class Meta:
        model = WebhookEndpoint
        fields = ["url", "description", "events", "active"]

    def clean_new_secret(self) -> str:
        secret = self.cleaned_data.get("new_secret") or ""
        if not secret:
            if self.instance.pk is None:
                raise forms.ValidationError(_("An endpoint needs a secret."))
            return ""
        try:
            return webhooks.clean_secret(secret)
        except InvalidInput as exc:
            raise forms.ValidationError(exc.message) from None

    def save(self, commit: bool = True) -> WebhookEndpoint:
        endpoint = super().save(commit=False)
        if self.cleaned_data.get("new_secret"):
            endpoint.secret_encrypted = webhooks.encrypt_secret(self.cleaned_data["new_secret"])
        if commit:
            endpoint.save()
        return endpoint


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    form = WebhookEndpointForm
    list_display = ["pk", "url", "description", "event_list", "active", "created_by",
                    "created_at"]
    list_filter = ["active"]
    list_editable = ["active"]
    search_fields = ["url", "description"]
    fields = ["url", "description", "events", "active", "new_secret"]

    @admin.display(description=gettext_lazy("events"))
    def event_list(self, obj: WebhookEndpoint) -> str:
        return ", ".join(obj.events or [])

    def save_model(self, request: HttpRequest, obj: WebhookEndpoint, form: Any,
                   change: bool) -> None:
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)


class WebhookAttemptInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = WebhookAttempt
    fields = ["at", "duration_ms", "http_status", "error", "response_excerpt"]
    readonly_fields = fields
    extra = 0
    can_delete = False


@admin.action(description=gettext_lazy("Redeliver selected deliveries"),
              permissions=["redeliver"])
def redeliver_action(modeladmin: admin.ModelAdmin, request: HttpRequest,
                     queryset: QuerySet[WebhookDelivery]) -> None:
    n = webhooks.redeliver(queryset)
    modeladmin.message_user(request, ngettext(
        "%(n)d delivery queued again.", "%(n)d deliveries queued again.", n) % {"n": n},
        messages.SUCCESS)


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["id", "event", "endpoint", "status", "attempts", "next_attempt_at",
                    "created_at"]
    list_filter = ["status", "event", "endpoint"]
    search_fields = ["=id"]
    list_select_related = ["endpoint"]
    fields = ["id", "endpoint", "event", "status", "attempts", "next_attempt_at", "retry_until",
              "created_at", "payload"]
    readonly_fields = fields
    inlines = [WebhookAttemptInline]
    actions = [redeliver_action]

    def has_redeliver_permission(self, request: HttpRequest) -> bool:
        # Redelivering sends data again: those who may change endpoints may.
        return request.user.has_perm("conversations.change_webhookendpoint")
