from __future__ import annotations

from datetime import timedelta
from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _

from conversations import services
from conversations.models import Agent, Team


class NewConversationForm(forms.Form):
    agent = forms.ModelChoiceField(
        queryset=Agent.objects.none(), label=_("Agent"), to_field_name="slug"
    )
    title = forms.CharField(label=_("Title"), required=False, max_length=services.TITLE_MAX_CHARS)
    external_user_id = forms.CharField(
        label=_("Customer (external user id)"),
        required=False,
        max_length=services.EXTERNAL_USER_ID_MAX_CHARS,
    )
    metadata = forms.CharField(
        label=_("Metadata (JSON object)"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "placeholder": '{"plan": "pro"}'}),
    )

    team = forms.ModelChoiceField(
        queryset=Team.objects.none(), label=_("Team"), to_field_name="slug",
        help_text=_("Its members share the conversation."))

    def __init__(self, *args: Any, user: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Only the agents the user's teams may use; create_conversation checks the pair.
        agents = services.teams.agents_for(user)
        self.fields["agent"].queryset = agents
        default = agents.default()
        if default is not None:
            self.fields["agent"].initial = default.slug
        teams = services.teams.user_teams(user)
        team = services.teams.default_team(user)
        if team is None:
            # In no team: a private conversation, nothing to choose.
            del self.fields["team"]
        else:
            self.fields["team"].queryset = teams
            self.fields["team"].initial = team.slug
            self.order_fields(["agent", "team"])

    def clean_metadata(self) -> dict[str, Any]:
        try:
            return services.clean_metadata(self.cleaned_data.get("metadata") or "")
        except services.InvalidInput as exc:
            raise forms.ValidationError(exc.message) from None


class RenameForm(forms.Form):
    title = forms.CharField(label=_("Title"), required=False, max_length=services.TITLE_MAX_CHARS)


class ApiTokenForm(forms.Form):
    """The settings page's "new API token" (services/tokens.py validates again)."""

    EXPIRY_CHOICES = [("30", _("30 days")), ("90", _("90 days")), ("365", _("365 days")),
                      ("never", _("Never"))]

    name = forms.CharField(label=_("Name"), max_length=services.tokens.NAME_MAX_CHARS,
                           help_text=_("To recognise it later, e.g. “CI export”."))
    scopes = forms.MultipleChoiceField(
        label=_("Scopes"), widget=forms.CheckboxSelectMultiple,
        choices=list(services.tokens.SCOPE_LABELS.items()))
    expires = forms.ChoiceField(label=_("Expires after"), choices=EXPIRY_CHOICES, initial="90",
                                widget=forms.RadioSelect)

    def lifetime(self) -> timedelta | None:
        value = self.cleaned_data["expires"]
        return None if value == "never" else timedelta(days=int(value))
