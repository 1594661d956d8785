"""The support desk's writes on a conversation (docs/teams.md): internal notes, and assignment
and handoff, each recorded in the transcript.

A note (role `note`) is for the team and reviewers: it never starts a run and is never sent to
a vendor (runs._turns keeps only user/assistant/system turns). Each assignment change writes an
event (role `event`) saying who did what. Both are announced to every open socket of the
conversation, in every process, through `conversation_event` (sent on commit; the relay
listens), as `message.created` then `conversation.updated`.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.dispatch import Signal
from django.utils import translation
from django.utils.translation import gettext as _

from conversations.models import Conversation, Message, Team
from conversations.services import webhooks
from conversations.services.errors import InvalidInput
from conversations.services.runs import _locked
from conversations.services.teams import is_member, team_members, user_teams
from conversations.services.validation import clean_client_id, clean_content

# Sent on commit with `conversation_id` and `message_id` (the note or event written).
conversation_event = Signal()

# A transfer note is a sentence or two, shown in the event line.
TRANSFER_NOTE_MAX_CHARS = 500


def _announce(conversation_id: Any, message_id: Any) -> None:
    transaction.on_commit(lambda: conversation_event.send(
        sender=Conversation, conversation_id=str(conversation_id), message_id=str(message_id)))


def display_name(user: Any) -> str:
    return user.get_full_name() or user.get_username()


def add_note(conversation_id: UUID | str, user: Any, *, content: Any,
             client_id: Any = None) -> tuple[Message, bool]:
    """An internal note at the end of the active path. Returns it and whether it is new
    (False: a repeated client_id, acknowledged again)."""
    content = clean_content(content)
    client_id = clean_client_id(client_id)
    with _locked(conversation_id, user) as locked:
        if (existing := locked.repeat(client_id)) is not None:
            return existing, False
        note = locked.append(Message.Role.NOTE, content, client_id=client_id)
        _announce(locked.conversation.pk, note.pk)
    return note, True


def _user(value: Any) -> Any:
    """A user named by id (an integer) or username (a string)."""
    model = get_user_model()
    if isinstance(value, bool) or not isinstance(value, int | str) or value == "":
        raise InvalidInput("invalid", _("assignee must be a user's id or username, or null."),
                           field="assignee")
    lookup = {"pk": value} if isinstance(value, int) else {model.USERNAME_FIELD: value}
    user = model.objects.filter(is_active=True, **lookup).first()
    if user is None:
        raise InvalidInput("invalid", _("No such user."), field="assignee", status=422)
    return user


def _event(locked: Any, kind: str, text: str, **fields: Any) -> Message:
    event = locked.append(Message.Role.EVENT, text, extra={"event": kind, **fields})
    _announce(locked.conversation.pk, event.pk)
    return event


def assign(conversation_id: UUID | str, actor: Any, assignee: Any, *,
           checked: bool = True) -> Conversation:
    """Assign the conversation to `assignee` (a user, an id or a username; None unassigns).
    The assignee must be a member of the conversation's team (for a conversation in no team:
    its owner). Writes an event when something changed."""
    target = None if assignee is None else (
        assignee if hasattr(assignee, "pk") else _user(assignee))
    with _locked(conversation_id, actor, checked=checked) as locked:
        conversation = locked.conversation
        if target is not None and not (
                is_member(target, conversation.team) or target.pk == conversation.owner_id):
            raise InvalidInput(
                "invalid", _("%(name)s is not a member of this conversation's team.")
                % {"name": display_name(target)}, field="assignee", status=422)
        if conversation.assignee_id == (target.pk if target else None):
            return conversation
        conversation.assignee = target
        conversation.save(update_fields=["assignee"])
        with translation.override(settings.LANGUAGE_CODE):
            if target is None:
                kind, text = "unassigned", _("%(actor)s unassigned this conversation.") % {
                    "actor": display_name(actor)}
            elif target.pk == actor.pk:
                kind, text = "taken", _("%(actor)s took this conversation.") % {
                    "actor": display_name(actor)}
            else:
                kind, text = "assigned", _("%(actor)s assigned this conversation to "
                                           "%(assignee)s.") % {
                    "actor": display_name(actor), "assignee": display_name(target)}
        _event(locked, kind, text, actor=actor.pk, assignee=target.pk if target else None)
        webhooks.emit("conversation.assigned", lambda: {
            "conversation_id": str(conversation.pk),
            "team": conversation.team.slug if conversation.team_id else None,
            "assignee": webhooks.user_json(target),
            "actor": webhooks.user_json(actor),
        })
    return conversation


def transfer(conversation_id: UUID | str, actor: Any, team: Any, note: Any = "", *,
             checked: bool = True) -> Conversation:
    """Hand the conversation to another team (a Team or its slug), with an optional note; its
    assignee is cleared for the new team to pick it up."""
    if not isinstance(note, str):
        raise InvalidInput("invalid", _("note must be text."), field="note")
    note = " ".join(note.split())
    if len(note) > TRANSFER_NOTE_MAX_CHARS:
        raise InvalidInput("too_large", _("The note must be at most %(max)s characters.")
                           % {"max": TRANSFER_NOTE_MAX_CHARS}, field="note", status=413)
    if not isinstance(team, Team):
        if not isinstance(team, str) or not team:
            raise InvalidInput("invalid", _("team must be a team's slug."), field="team")
        found = Team.objects.filter(slug=team).first()
        if found is None:
            raise InvalidInput("invalid", _("No such team."), field="team", status=422)
        team = found
    with _locked(conversation_id, actor, checked=checked) as locked:
        conversation = locked.conversation
        if conversation.team_id == team.pk:
            return conversation
        conversation.team = team
        conversation.assignee = None
        conversation.save(update_fields=["team", "assignee"])
        with translation.override(settings.LANGUAGE_CODE):
            values = {"actor": display_name(actor), "team": team.name, "note": note}
            text = (_("%(actor)s transferred this conversation to %(team)s: “%(note)s”")
                    if note else _("%(actor)s transferred this conversation to %(team)s."))
            text = text % values
        _event(locked, "transferred", text, actor=actor.pk, team=team.slug, note=note)
    return conversation


def desk_choices(user: Any, conversation: Conversation) -> dict[str, Any] | None:
    """What the chat header offers: the people the conversation may be assigned to (its team's
    members; its owner for one in no team) and the teams it may go to. None when the desk has
    nothing to offer (a user in no team, on a conversation in no team)."""
    teams = list(Team.objects.order_by("name"))
    if conversation.team_id is None and not user_teams(user).exists():
        return None
    if conversation.team_id is not None:
        members = list(team_members(conversation.team).order_by("username"))
    else:
        members = [conversation.owner]
    return {"members": members, "teams": teams}


def apply_assignment(conversation: Conversation, actor: Any, body: dict[str, Any]) -> None:
    """The API's PATCH fields `team` (with `note`) and `assignee`, in that order (a transfer
    clears the assignee; an assignee given with it is a member of the new team)."""
    if "note" in body and "team" not in body:
        raise InvalidInput("invalid", _("note goes with team."), field="note")
    if "team" in body:
        transfer(conversation.pk, actor, body["team"], body.get("note") or "")
    if "assignee" in body:
        assign(conversation.pk, actor, body["assignee"])
    conversation.refresh_from_db()


def assign_many(conversation_ids: list[Any], actor: Any, assignee: Any) -> int:
    """The admin's bulk assignment (its permissions checked there): one event per change;
    conversations whose team the assignee is not in are skipped. Returns how many changed."""
    changed = 0
    for pk in conversation_ids:
        before = Conversation.objects.filter(pk=pk).values_list("assignee_id", flat=True).first()
        try:
            after = assign(pk, actor, assignee, checked=False).assignee_id
        except InvalidInput:
            continue
        changed += before != after
    return changed


def transfer_many(conversation_ids: list[Any], actor: Any, team: Team, note: str = "") -> int:
    """The admin's bulk transfer: one event per conversation moved."""
    changed = 0
    for pk in conversation_ids:
        before = Conversation.objects.filter(pk=pk).values_list("team_id", flat=True).first()
        changed += before != transfer(pk, actor, team, note, checked=False).team_id
    return changed
