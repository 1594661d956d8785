"""The audit trail (docs/audit.md): auditlog's row changes for every audited kind, made in the
admin, by bulk actions and by services' QuerySet.update(); AuditEvent for transcript reads,
exports, logins and lockouts; the read-only admin pages; pruning."""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from auditlog.models import LogEntry
from django.contrib.auth.models import Group
from django.contrib.contenttypes.models import ContentType
from django.core.management import call_command
from django.forms import MultiWidget
from django.test import Client, RequestFactory
from django.utils import timezone

from conversations.models import (
    Agent,
    AuditEvent,
    AuditEventRefused,
    CannedReply,
    Conversation,
    Label,
    QueueItem,
    ReviewQueue,
    ScoreConfig,
    Team,
    TeamMembership,
)
from conversations.services import audit, queues, teams
from tests.conftest import logged_in

pytestmark = pytest.mark.django_db

LOGIN = "/accounts/login/"
CHANGELIST = "/admin/conversations/conversation/"


@pytest.fixture(autouse=True)
def _fast_hasher(settings: Any) -> None:
    """A dozen password checks: the real hasher's cost is not what is tested here."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def entries(obj: Any, action: int = LogEntry.Action.UPDATE) -> list[LogEntry]:
    return list(LogEntry.objects.filter(
        content_type=ContentType.objects.get_for_model(obj), object_pk=str(obj.pk),
        action=action).order_by("pk"))


def changes(obj: Any, action: int = LogEntry.Action.UPDATE) -> list[dict[str, Any]]:
    return [e.changes for e in entries(obj, action)]


# Changes in the admin --------------------------------------------------------------------------


def _post_value(field: Any, value: Any) -> Any:
    if isinstance(value, bool):
        return "on" if value else None
    if isinstance(value, list | tuple):
        return [str(v) for v in value]
    return "" if value is None else str(value)


def change_form_data(client: Client, url: str) -> dict[str, Any]:
    """What the change page's form would post unchanged: every field's current value, and the
    inlines' forms (so a change of one field is the only change)."""
    response = client.get(url)
    assert response.status_code == 200, url
    forms = [response.context["adminform"].form]
    data: dict[str, Any] = {}
    for inline in response.context.get("inline_admin_formsets", []):
        formset = inline.formset
        management = formset.management_form
        for name in management.fields:
            data[management[name].html_name] = management[name].value()
        forms += list(formset.forms)
    for form in forms:
        for name, field in form.fields.items():
            if field.disabled:
                continue
            bound = form[name]
            value = bound.value()
            if isinstance(field.widget, MultiWidget) and not isinstance(value, list):
                for i, part in enumerate(field.widget.decompress(value)):
                    data[f"{bound.html_name}_{i}"] = "" if part is None else str(part)
                continue
            posted = _post_value(field, value)
            if posted is not None:
                data[bound.html_name] = posted
    return data


def admin_change(client: Client, obj: Any, **values: Any) -> None:
    url = f"/admin/{obj._meta.app_label}/{obj._meta.model_name}/{obj.pk}/change/"
    data = change_form_data(client, url)
    for key, value in values.items():
        if value is False:
            data.pop(key, None)
        else:
            data[key] = _post_value(None, value)
    response = client.post(url, data)
    assert response.status_code == 302, (url, response.context["adminform"].form.errors
                                         if response.context else response)


def test_it_logs_an_admin_change_of_each_audited_kind_with_old_and_new_values(
    staff: Any, staff_client: Client, alice: Any, demo_agent: Agent
):
    team = Team.objects.create(slug="billing", name="Billing")
    membership = teams.add_member(team, alice)
    label = Label.objects.create(name="refund", color="#aa0000")
    reply = CannedReply.objects.create(title="Hello", shortcut="hello", body="Hi there",
                                       scope="everyone")
    config = ScoreConfig.objects.create(name="Accuracy", kind="numeric", min_value=1,
                                        max_value=5)
    queue = ReviewQueue.objects.create(name="Thumbs down")
    queue.configs.add(config)
    conversation = Conversation.objects.create(owner=alice, agent=demo_agent, title="Refund")

    admin_change(staff_client, demo_agent, name="Demo agent v2")
    admin_change(staff_client, alice, is_staff=True)
    admin_change(staff_client, team, name="Billing desk")
    admin_change(staff_client, team, **{"memberships-0-role": "lead"})
    admin_change(staff_client, label, color="#00aa00")
    admin_change(staff_client, reply, body="Hello and welcome")
    admin_change(staff_client, config, max_value="10")
    admin_change(staff_client, queue, sample_percent="5")
    admin_change(staff_client, conversation, review_status="flagged")

    assert changes(demo_agent)[-1]["name"] == ["Demo agent", "Demo agent v2"]
    assert changes(alice)[-1] == {"is_staff": ["False", "True"]}
    assert changes(team)[-1] == {"name": ["Billing", "Billing desk"]}
    assert changes(membership)[-1] == {"role": ["member", "lead"]}
    assert changes(label)[-1] == {"color": ["#aa0000", "#00aa00"]}
    assert changes(reply)[-1]["body"] == ["Hi there", "Hello and welcome"]
    assert changes(config)[-1] == {"max_value": ["5.0", "10.0"]}
    assert changes(queue)[-1] == {"sample_percent": ["0.0", "5.0"]}
    logged = changes(conversation)[-1]
    assert logged["review_status"] == ["unreviewed", "flagged"]
    assert logged["reviewed_by"] == ["None", str(staff.pk)]
    # Every entry names who made it and from where.
    for obj in (demo_agent, alice, team, membership, label, reply, config, queue, conversation):
        entry = entries(obj)[-1]
        assert entry.actor == staff and entry.remote_addr == "127.0.0.1"


def test_it_logs_creations_and_deletions_without_message_text(
    staff_client: Client, alice: Any, demo_agent: Agent
):
    conversation = Conversation.objects.create(owner=alice, agent=demo_agent, title="Refund",
                                               metadata={"card": "4242"})
    created = changes(conversation, LogEntry.Action.CREATE)[0]
    assert "metadata" not in created and "title" not in created
    pk = conversation.pk
    response = staff_client.post(f"{CHANGELIST}{pk}/delete/", {"post": "yes"})
    assert response.status_code == 302 and not Conversation.objects.filter(pk=pk).exists()
    deleted = LogEntry.objects.get(object_pk=str(pk), action=LogEntry.Action.DELETE)
    assert deleted.object_repr == "Refund" and deleted.actor.username == "root"
    assert "4242" not in json.dumps(deleted.changes)


def test_it_logs_a_password_change_without_the_hash(alice: Any):
    old_hash = alice.password
    alice.set_password("a-new-password-456")
    alice.save()
    logged = changes(alice)[-1]
    assert logged == {"password": ["********", "********"]}
    assert old_hash not in json.dumps(logged) and alice.password not in json.dumps(logged)


def test_it_logs_the_reviewer_role_as_a_group_change(alice: Any):
    call_command("reviewers", "add", "alice", stdout=StringIO())
    logged = changes(alice)
    assert {"is_staff": ["False", "True"]} in logged
    assert {"groups": {"type": "m2m", "operation": "add", "objects": ["reviewer"]}} in logged


# Bulk actions and QuerySet.update() ------------------------------------------------------------


def _action(client: Client, action: str, conversations: list[Conversation],
            **extra: Any) -> Any:
    return client.post(CHANGELIST, {
        "action": action, "_selected_action": [str(c.pk) for c in conversations], "index": 0,
        **extra,
    })


def test_it_logs_a_bulk_action_per_conversation(
    reviewer_client: Client, reviewer: Any, alice: Any, demo_agent: Agent
):
    a, b, c = (Conversation.objects.create(owner=alice, agent=demo_agent, title=t)
               for t in "abc")
    c.review_status = "reviewed"
    c.save()
    assert _action(reviewer_client, "mark_reviewed", [a, b, c]).status_code == 302

    for conversation in (a, b):
        entry = entries(conversation)[-1]
        assert entry.changes["review_status"] == ["unreviewed", "reviewed"]
        assert entry.changes["reviewed_by"] == ["None", str(reviewer.pk)]
        assert entry.actor == reviewer
    # Already reviewed: only the stamp changed.
    assert "review_status" not in entries(c)[-1].changes


def test_it_logs_label_additions_from_the_bulk_action_and_the_form(
    reviewer_client: Client, reviewer: Any, alice: Any, demo_agent: Agent
):
    a, b = (Conversation.objects.create(owner=alice, agent=demo_agent, title=t) for t in "ab")
    label = Label.objects.create(name="hallucination")
    a.labels.add(label)
    before = len(entries(a))

    assert _action(reviewer_client, "add_label", [a, b], apply="1",
                   label=label.pk).status_code == 302
    added = {"labels": {"type": "m2m", "operation": "add", "objects": ["hallucination"]}}
    assert changes(b)[0] == added and entries(b)[0].actor == reviewer
    # `a` had it: no second "add" for it, only the reviewer's stamp.
    assert [e.changes for e in entries(a)[before:]
            if "labels" in e.changes] == []

    admin_change(reviewer_client, b, labels=[])
    assert changes(b)[-1] == {
        "labels": {"type": "m2m", "operation": "delete", "objects": ["hallucination"]}}


def test_it_logs_services_updates_per_object(alice: Any, bob: Any, demo_agent: Agent):
    team = Team.objects.create(slug="billing", name="Billing")
    other = Team.objects.create(slug="sales", name="Sales")
    teams.add_member(team, alice)
    teams.add_member(team, bob)
    teams.add_member(other, bob)
    one, two = (Conversation.objects.create(owner=alice, agent=demo_agent, team=team,
                                            assignee=bob, title=t) for t in ("one", "two"))

    teams.remove_member(team, bob)
    for conversation in (one, two):
        assert changes(conversation)[-1] == {"assignee": [str(bob.pk), "None"]}

    teams.add_member(team, bob)
    teams.set_default_team(bob, team)
    old_default = TeamMembership.objects.get(user=bob, team=other)
    new_default = TeamMembership.objects.get(user=bob, team=team)
    assert changes(old_default)[-1] == {"is_default": ["True", "False"]}
    assert changes(new_default)[-1] == {"is_default": ["False", "True"]}


def test_it_logs_the_agents_commands_default_switch(demo_agent: Agent):
    call_command("agents", "add", "other", "--provider", "demo", "--default", stdout=StringIO())
    assert changes(demo_agent)[-1] == {"is_default": ["True", "False"]}


def test_it_does_not_read_the_row_for_saves_of_unaudited_fields(
    alice: Any, demo_agent: Agent, django_assert_num_queries: Any
):
    conversation = Conversation.objects.create(owner=alice, agent=demo_agent)
    conversation.updated_at = timezone.now()
    with django_assert_num_queries(1):  # the UPDATE alone: no SELECT of the old row
        conversation.save(update_fields=["updated_at", "active_leaf_id"])
    assert entries(conversation) == []


# Reads and exports ------------------------------------------------------------------------------


def test_it_records_a_reviewer_opening_a_transcript_but_not_the_owner(
    reviewer: Any, reviewer_client: Client, api_client: Client, alice: Any, demo_agent: Agent
):
    conversation = Conversation.objects.create(owner=alice, agent=demo_agent, title="Refund")
    assert reviewer_client.get(f"{CHANGELIST}{conversation.pk}/change/").status_code == 200
    event = AuditEvent.objects.get(action="transcript.viewed")
    assert event.actor == reviewer and event.actor_name == "rita"
    assert (event.object_type, event.object_id, event.object_repr) == (
        "conversations.Conversation", str(conversation.pk), "Refund")
    assert event.details == {"surface": "admin"} and event.ip == "127.0.0.1"

    assert api_client.get(f"/api/v1/conversations/{conversation.pk}").status_code == 200
    assert AuditEvent.objects.filter(action="transcript.viewed").count() == 1


def test_it_records_a_teammate_reading_through_the_api(
    alice: Any, bob: Any, demo_agent: Agent
):
    team = Team.objects.create(slug="billing", name="Billing")
    teams.add_member(team, alice)
    teams.add_member(team, bob)
    conversation = Conversation.objects.create(owner=alice, agent=demo_agent, team=team)
    assert logged_in(bob).get(f"/api/v1/conversations/{conversation.pk}").status_code == 200
    event = AuditEvent.objects.get(action="transcript.viewed")
    assert event.actor == bob and event.details == {"surface": "api"}


def test_it_records_the_reviewer_item_page(
    reviewer: Any, reviewer_client: Client, alice: Any, demo_agent: Agent
):
    queue = ReviewQueue.objects.create(name="All")
    queue.assignees.add(reviewer)
    conversation = Conversation.objects.create(owner=alice, agent=demo_agent, title="Order")
    item = queues.enqueue(queue, conversation=conversation, reason="manual")
    assert isinstance(item, QueueItem)
    claimed = reviewer_client.post(f"/review/queues/{queue.pk}/start")
    assert claimed.status_code == 302
    assert reviewer_client.get(claimed.url).status_code == 200
    event = AuditEvent.objects.get(action="transcript.viewed")
    assert event.object_id == str(conversation.pk) and event.details == {"surface": "review"}


def test_it_records_an_export_with_its_filters_and_counts(
    reviewer: Any, reviewer_client: Client, alice: Any, demo_agent: Agent
):
    for title in ("a", "b"):
        conversation = Conversation.objects.create(owner=alice, agent=demo_agent, title=title,
                                                   review_status="flagged")
        for seq in (1, 2):
            conversation.messages.create(seq=seq, role="user", content=f"m{seq}")
    Conversation.objects.create(owner=alice, agent=demo_agent, title="c")

    response = reviewer_client.get("/api/v1/conversations/export?format=csv"
                                   "&review_status=flagged&owner=alice")
    assert response.status_code == 200
    lines = b"".join(response.streaming_content).decode().strip().splitlines()
    event = AuditEvent.objects.get(action="export.downloaded")
    assert event.actor == reviewer
    assert event.details == {"format": "csv", "source": "api",
                             "filters": {"review_status": "flagged", "owner": "alice"},
                             "conversations": 2, "rows": 4}
    assert len(lines) - 1 == event.details["rows"]

    everything = Conversation.objects.order_by("title")
    response = _action(reviewer_client, "export_jsonl", list(everything))
    assert response.status_code == 200
    lines = b"".join(response.streaming_content).decode().strip().splitlines()
    event = AuditEvent.objects.filter(action="export.downloaded").first()
    assert event.details == {"format": "jsonl", "source": "admin",
                             "filters": {"select_across": False},
                             "conversations": 3, "rows": 3}
    assert len(lines) == 3


# Logins -----------------------------------------------------------------------------------------


def _login(username: str, password: str) -> Any:
    return Client().post(LOGIN, {"username": username, "password": password, "next": "/"},
                         REMOTE_ADDR="203.0.113.7")


def test_it_records_logins_failures_lockouts_and_logouts(alice: Any):
    client = Client()
    response = client.post(LOGIN, {"username": "alice", "password": "pw-alice-123"},
                           REMOTE_ADDR="203.0.113.7")
    assert response.status_code == 302
    event = AuditEvent.objects.get(action="login.succeeded")
    assert (event.actor, event.ip, event.details) == (alice, "203.0.113.7",
                                                      {"method": "password"})
    client.post("/accounts/logout/", REMOTE_ADDR="203.0.113.7")
    assert AuditEvent.objects.get(action="logout").actor == alice

    statuses = [_login("alice", "wrong-password").status_code for _ in range(10)]
    assert statuses[-1] == 429
    failed = AuditEvent.objects.filter(action="login.failed")
    assert failed.count() == 10
    assert {(e.actor_name, e.details["username"], e.ip) for e in failed} == {
        ("alice", "alice", "203.0.113.7")}
    locked = AuditEvent.objects.get(action="login.locked_out")
    assert locked.actor_name == "alice" and locked.ip == "203.0.113.7"
    stored = json.dumps(list(AuditEvent.objects.values("details", "actor_name")))
    assert "wrong-password" not in stored and "pw-alice-123" not in stored


def test_it_stores_a_hostile_attempted_username_cleanly(caplog: Any):
    hostile = "a\x00b\ud800" + "x" * 10_000
    request = RequestFactory().post(LOGIN, REMOTE_ADDR="203.0.113.7")
    # Our receiver alone: a real request never carries a lone surrogate (Django decodes forms
    # with "replace") or a NUL (RequestTextMiddleware), and django-axes' own receiver would
    # choke on them.
    with caplog.at_level(logging.WARNING):
        audit._login_failed(sender=__name__, request=request,
                            credentials={"username": hostile, "password": "********"})
    event = AuditEvent.objects.get(action="login.failed")
    assert len(event.actor_name) == 150 and "\x00" not in event.actor_name
    assert event.actor_name.startswith("a\N{REPLACEMENT CHARACTER}b?")
    assert event.details == {"username": event.actor_name} and event.ip == "203.0.113.7"
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_it_refuses_unknown_actions_and_odd_details():
    with pytest.raises(ValueError):
        audit.record("transcript.edited")
    event = audit.record("token.created", details={
        "name": "x" * 2000, "nan": float("nan"), "nested": {"a": [1, 2, {"b": {"c": {"d": 1}}}]},
    })
    event.refresh_from_db()
    assert len(event.details["name"]) == 500 and event.details["nan"] == "nan"
    assert event.details["nested"]["a"][:2] == [1, 2]


# Append-only -------------------------------------------------------------------------------------


def test_it_keeps_audit_events_append_only(alice: Any):
    event = audit.record("token.revoked", actor=alice, target=alice)
    event.action = "logout"
    with pytest.raises(AuditEventRefused):
        event.save()
    with pytest.raises(AuditEventRefused):
        event.delete()
    with pytest.raises(AuditEventRefused):
        AuditEvent.objects.filter(pk=event.pk).update(action="logout")
    alice.delete()  # on_delete=SET_NULL: the one update allowed
    event.refresh_from_db()
    assert (event.action, event.actor, event.actor_name) == ("token.revoked", None, "alice")


@pytest.mark.parametrize("base", ["/admin/conversations/auditevent/",
                                  "/admin/auditlog/logentry/"])
def test_it_shows_the_audit_pages_read_only_even_to_a_superuser(
    base: str, staff: Any, staff_client: Client, alice: Any
):
    audit.record("login.succeeded", actor=alice, target=alice, details={"method": "password"})
    Label.objects.create(name="refund")
    model = AuditEvent if "auditevent" in base else LogEntry
    row = model.objects.first()
    assert staff_client.get(base).status_code == 200
    assert staff_client.get(f"{base}{row.pk}/change/").status_code == 200  # the view page
    assert staff_client.get(f"{base}add/").status_code == 403
    assert staff_client.post(f"{base}add/", {}).status_code == 403
    assert staff_client.post(f"{base}{row.pk}/change/", {}).status_code == 403
    assert staff_client.post(f"{base}{row.pk}/delete/", {"post": "yes"}).status_code == 403
    response = staff_client.post(base, {"action": "delete_selected", "index": 0,
                                        "_selected_action": [str(row.pk)], "post": "yes"})
    assert response.status_code in (200, 302)
    assert model.objects.filter(pk=row.pk).exists()


def test_it_searches_the_audit_pages(staff_client: Client, alice: Any, bob: Any):
    audit.record("login.succeeded", actor=alice, target=alice)
    audit.record("login.succeeded", actor=bob, target=bob)
    page = staff_client.get("/admin/conversations/auditevent/?q=alice")
    assert page.status_code == 200
    assert [e.actor_name for e in page.context["cl"].result_list] == ["alice"]
    page = staff_client.get("/admin/conversations/auditevent/?action__exact=login.succeeded")
    # root's own login (the client's) is one too.
    assert {e.actor_name for e in page.context["cl"].result_list} == {"alice", "bob", "root"}
    Label.objects.create(name="refund")
    page = staff_client.get("/admin/auditlog/logentry/?q=refund")
    assert [e.object_repr for e in page.context["cl"].result_list] == ["refund"]
    page = staff_client.get("/admin/auditlog/logentry/?q=root")  # the actor
    assert page.status_code == 200


@pytest.mark.parametrize("base", ["/admin/conversations/auditevent/",
                                  "/admin/auditlog/logentry/"])
def test_it_answers_hostile_searches_without_a_traceback(
    base: str, staff_client: Client, caplog: Any
):
    with caplog.at_level(logging.WARNING):
        assert staff_client.get(base, {"q": "x" * 200_000}).status_code == 200
        assert staff_client.get(base, {"q": "a " * 50_000}).status_code == 200
        # Not UTF-8 (a lone surrogate's bytes), and LIKE's wildcards.
        assert staff_client.get(f"{base}?q=%ED%A0%80%25'%5C_").status_code == 200
        assert staff_client.get(base, {"q": "a\x00b"}).status_code == 400
        assert staff_client.get(base, {"at__gte": "not a date"}).status_code in (200, 302)
    assert not [r for r in caplog.records
                if r.levelno >= logging.ERROR or r.exc_info]


# Retention --------------------------------------------------------------------------------------


def test_it_prunes_old_rows_only(settings: Any, alice: Any):
    settings.AUDIT_RETENTION_DAYS = 30
    old_event = audit.record("logout", actor=alice)
    AuditEvent.objects.create(at=timezone.now() - timedelta(days=31), action="logout",
                              actor_name="alice")
    recent = AuditEvent.objects.create(at=timezone.now() - timedelta(days=29), action="logout",
                                       actor_name="alice")
    label = Label.objects.create(name="refund")
    old_entry = entries(label, LogEntry.Action.CREATE)[0]
    LogEntry.objects.filter(pk=old_entry.pk).update(
        timestamp=timezone.now() - timedelta(days=40))
    Group.objects.create(name="new")  # not audited: no entry
    label.name = "refunds"
    label.save()

    out = StringIO()
    call_command("prune_audit", "--dry-run", stdout=out)
    assert out.getvalue().strip() == (
        "would delete 1 audit events and 1 row-change entries older than 30 days")
    assert AuditEvent.objects.count() == 3 and LogEntry.objects.filter(pk=old_entry.pk).exists()

    out = StringIO()
    call_command("prune_audit", stdout=out)
    assert out.getvalue().strip() == (
        "deleted 1 audit events and 1 row-change entries older than 30 days")
    assert set(AuditEvent.objects.values_list("pk", flat=True)) == {old_event.pk, recent.pk}
    assert not LogEntry.objects.filter(pk=old_entry.pk).exists()
    assert entries(label)  # the recent change stays


def test_it_keeps_everything_with_a_retention_of_zero(settings: Any):
    settings.AUDIT_RETENTION_DAYS = 0
    AuditEvent.objects.create(at=timezone.now() - timedelta(days=5000), action="logout")
    out = StringIO()
    call_command("prune_audit", stdout=out)
    assert "kept forever" in out.getvalue()
    assert AuditEvent.objects.count() == 1
    out = StringIO()
    call_command("prune_audit", "--days", "1", stdout=out)
    assert AuditEvent.objects.count() == 0


def test_it_records_tokens_created_and_revoked_on_the_page_and_by_the_command(
        alice: Any, django_capture_on_commit_callbacks: Any):
    client = logged_in(alice)
    with django_capture_on_commit_callbacks(execute=True):
        client.post("/settings/tokens", {"name": "ci bot", "scopes": ["read"], "expires": "30"})
    token = alice.api_tokens.get()
    created = AuditEvent.objects.get(action="token.created")
    assert (created.actor, created.object_id) == (alice, str(token.pk))
    assert created.details["scopes"] == ["read"] and created.details["prefix"] == token.prefix
    # Nothing of the secret beyond the prefix shown in lists.
    assert token.token_hash not in json.dumps(created.details)
    with django_capture_on_commit_callbacks(execute=True):
        client.post(f"/settings/tokens/{token.pk}/revoke")
    revoked = AuditEvent.objects.get(action="token.revoked")
    assert (revoked.actor, revoked.object_id) == (alice, str(token.pk))
    with django_capture_on_commit_callbacks(execute=True):
        call_command("tokens", "create", "alice", "--scope", "write", stdout=StringIO())
    by_command = AuditEvent.objects.filter(action="token.created").order_by("-at", "-pk").first()
    assert by_command.actor is None and by_command.actor_name == "manage.py tokens"
    assert by_command.details["user"] == "alice"


def test_it_logs_a_webhook_endpoint_change_with_its_secret_masked(staff: Any):
    from conversations.services import webhooks

    endpoint = webhooks.create_endpoint("https://hooks.example.com/a", "s3cret-value-123",
                                        ["reply.completed"])
    endpoint.active = False
    endpoint.save()
    entries = LogEntry.objects.get_for_object(endpoint)
    assert entries.count() == 2
    assert entries.order_by("-timestamp").first().changes_dict["active"] == ["True", "False"]
    created = entries.order_by("timestamp").first().changes_dict
    assert created["secret_encrypted"][1] == audit.MASK
