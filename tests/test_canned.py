"""Canned replies (issue 12 §4): the restricted renderer, who sees and who may change which
replies, the picker's API and the management pages."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import translation
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from conversations import services
from conversations.models import Agent, CannedReply, Conversation, Team
from conversations.services import canned
from conversations.services.teams import add_member
from tests.conftest import logged_in

URL = "/api/v1/canned-replies"


def context(**customer: Any) -> dict[str, Any]:
    return {
        "customer": {"external_user_id": customer.get("external_user_id", "C-42"),
                     "metadata": customer.get("metadata", {"plan": "gold"})},
        "user": {"first_name": "Alice", "last_name": "Martin", "username": "alice"},
        "agent": {"name": "Demo agent"},
    }


def no_tracebacks(caplog: Any) -> None:
    assert not [r for r in caplog.records if r.exc_info], "no traceback may be logged"
    assert "Traceback" not in caplog.text


# The renderer -----------------------------------------------------------------------------------


def test_it_fills_every_whitelisted_variable_with_spaces_in_the_braces_allowed():
    body = ("Hi {{user.first_name}} {{ user.last_name }} ({{user.username}}), customer "
            "{{  customer.external_user_id  }} on {{customer.metadata.plan}} — {{agent.name}}")
    rendered = canned.render(body, context())
    assert rendered.text == ("Hi Alice Martin (alice), customer C-42 on gold — Demo agent")
    assert rendered.missing == []
    assert [p.name for p in rendered.parts if p.name] == [
        "user.first_name", "user.last_name", "user.username", "customer.external_user_id",
        "customer.metadata.plan", "agent.name"]


def test_it_walks_nested_metadata_and_renders_non_strings_as_json():
    metadata = {"account": {"tier": {"name": "Pro"}, "seats": 12, "trial": False,
                            "tags": ["vip", "eu"], "limits": {"b": 2, "a": 1}},
                "ratio": 0.5, "étage": "3e"}
    ctx = context(metadata=metadata)
    assert canned.render("{{customer.metadata.account.tier.name}}", ctx).text == "Pro"
    assert canned.render("{{customer.metadata.account.seats}}", ctx).text == "12"
    assert canned.render("{{customer.metadata.account.trial}}", ctx).text == "false"
    assert canned.render("{{customer.metadata.account.tags}}", ctx).text == '["vip", "eu"]'
    assert canned.render("{{customer.metadata.account.tags.1}}", ctx).text == "eu"
    assert canned.render("{{customer.metadata.account.limits}}", ctx).text == '{"a": 1, "b": 2}'
    assert canned.render("{{customer.metadata.ratio}}", ctx).text == "0.5"
    assert canned.render("{{customer.metadata.étage}}", ctx).text == "3e"


def test_it_leaves_what_it_cannot_fill_in_place_and_reports_it_once():
    ctx = context(external_user_id="", metadata={"plan": None, "empty": "", "tags": ["a"]})
    body = ("{{customer.external_user_id}} {{ customer.metadata.plan }} {{customer.metadata.x}} "
            "{{customer.metadata.empty}} {{customer.metadata.tags.5}} {{customer.metadata.plan}} "
            "{{user.email}}")
    rendered = canned.render(body, ctx)
    assert rendered.missing == [
        "customer.external_user_id", "customer.metadata.plan", "customer.metadata.x",
        "customer.metadata.empty", "customer.metadata.tags.5", "user.email"]
    # Left as the normalized placeholder, for the user to fill.
    assert rendered.text == ("{{customer.external_user_id}} {{customer.metadata.plan}} "
                             "{{customer.metadata.x}} {{customer.metadata.empty}} "
                             "{{customer.metadata.tags.5}} {{customer.metadata.plan}} "
                             "{{user.email}}")
    assert [p.missing for p in rendered.parts if p.name][:2] == [True, True]


@pytest.mark.parametrize("name", [
    "user.password", "user.__class__", "customer.__class__", "agent.name.upper",
    "user.first_name|upper", "customer.metadata", "customer", "user", "settings.SECRET_KEY",
    "customer.metadata.plan.__class__", "customer.metadata..plan", "customer.metadata.pl an",
    "request.user", "customer.metadata.a.b.c.d.e.f.g.h.i",
])
def test_it_reaches_nothing_beyond_the_whitelist(name: str):
    ctx = context(metadata={"plan": "gold", "a": {"b": {"c": {"d": {"e": {"f": {"g": {
        "h": {"i": "deep"}}}}}}}}})
    rendered = canned.render("{{" + name + "}}", ctx)
    assert rendered.missing == [name.strip()]
    assert "gold" not in rendered.text and "deep" not in rendered.text


def test_it_is_not_the_template_engine_and_fills_in_one_pass():
    ctx = context(metadata={"plan": "{{user.username}} {% load x %}"})
    body = "{% for x in y %}{{ customer.metadata.plan }}{% endfor %} {{ 7*7 }} {# c #}"
    rendered = canned.render(body, ctx)
    # Tags and comments are text; a value holding braces is inserted as it is, never expanded.
    assert rendered.text == ("{% for x in y %}{{user.username}} {% load x %}{% endfor %} "
                             "{{7*7}} {# c #}")
    assert rendered.missing == ["7*7"]


METADATA = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
NAMES = st.sampled_from(["customer.external_user_id", "user.first_name", "user.last_name",
                         "user.username", "agent.name", "customer.metadata.a",
                         "customer.metadata.a.b", "customer.metadata.0", "nope", " user.x "])
BODY = st.lists(st.one_of(st.text(max_size=30), NAMES.map(lambda n: "{{" + n + "}}"),
                          st.sampled_from(["{{", "}}", "{", "}", "{{{", "}}}", "{%", "%}"])),
                max_size=12).map("".join)


@hsettings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=BODY, metadata=st.dictionaries(st.text(max_size=8), METADATA, max_size=4),
       values=st.lists(st.text(max_size=20), min_size=5, max_size=5))
def test_it_never_raises_and_never_executes(body: str, metadata: dict[str, Any],
                                            values: list[str]):
    ctx = {"customer": {"external_user_id": values[0], "metadata": metadata},
           "user": {"first_name": values[1], "last_name": values[2], "username": values[3]},
           "agent": {"name": values[4]}}
    rendered = canned.render(body, ctx)
    assert rendered.text == "".join(p.text for p in rendered.parts)
    # Literal text is kept as written; each variable becomes its value or its placeholder.
    for part in rendered.parts:
        if part.name is None:
            assert part.text in body
        elif part.missing:
            assert part.text == canned.placeholder(part.name)
            assert part.name in rendered.missing
        else:
            assert part.text == part.value
    assert len(set(rendered.missing)) == len(rendered.missing)
    # Text without a variable is returned untouched.
    if canned.VARIABLE_RE.search(body) is None:
        assert rendered.text == body


@hsettings(max_examples=200, deadline=None)
@given(body=st.text(max_size=400), context_value=st.from_type(object) | st.none())
def test_it_survives_any_context_shape(body: str, context_value: Any):
    rendered = canned.render(body, {"customer": context_value, "user": context_value,
                                    "agent": context_value})
    assert isinstance(rendered.text, str)


# Users, teams and replies ------------------------------------------------------------------------


def make_user(name: str, **extra: Any) -> Any:
    return get_user_model().objects.create_user(name, f"{name}@example.com", f"pw-{name}-123",
                                                **extra)


@pytest.fixture
def desk(db: Any, demo_agent: Agent) -> dict[str, Any]:
    """Billing (lead Lea, member Max) and Support (member Sam); Otto in no team."""
    billing = Team.objects.create(name="Billing", slug="billing")
    support = Team.objects.create(name="Support", slug="support")
    lea, max_, sam, otto = (make_user(n, first_name=n.capitalize())
                            for n in ("lea", "max", "sam", "otto"))
    add_member(billing, lea, lead=True)
    add_member(billing, max_)
    add_member(support, sam)
    add_member(support, max_)
    conversation = Conversation.objects.create(
        owner=lea, agent=demo_agent, team=billing, external_user_id="C-42",
        metadata={"plan": "gold"})
    return {"billing": billing, "support": support, "lea": lea, "max": max_, "sam": sam,
            "otto": otto, "conversation": conversation, "agent": demo_agent}


def reply(shortcut: str, *, scope: str = "everyone", body: str = "Text", title: str = "",
          owner: Any = None, team: Team | None = None, language: str = "") -> CannedReply:
    return CannedReply.objects.create(shortcut=shortcut, title=title or shortcut.title(),
                                      body=body, scope=scope, owner=owner, team=team,
                                      language=language)


def shortcuts(replies: list[CannedReply]) -> list[str]:
    return [r.shortcut for r in replies]


def test_it_shows_own_personal_team_and_everyone_replies_only(desk: dict[str, Any]):
    reply("mine", scope="personal", owner=desk["max"])
    reply("lea-own", scope="personal", owner=desk["lea"])
    reply("bill", scope="team", team=desk["billing"])
    reply("supp", scope="team", team=desk["support"])
    reply("all")
    assert sorted(shortcuts(canned.replies_for(desk["max"]))) == ["all", "bill", "mine", "supp"]
    assert sorted(shortcuts(canned.replies_for(desk["lea"]))) == ["all", "bill", "lea-own"]
    assert sorted(shortcuts(canned.replies_for(desk["otto"]))) == ["all"]


def test_it_lists_the_conversations_team_first_then_the_language(desk: dict[str, Any]):
    reply("a-support", scope="team", team=desk["support"])
    reply("b-billing", scope="team", team=desk["billing"])
    reply("c-english", language="en")
    reply("c-french", language="fr")
    reply("c-quebec", language="fr-ca")
    reply("c-any")
    with translation.override("fr-ca"):
        order = shortcuts(canned.replies_for(desk["max"], desk["conversation"]))
    assert order == ["b-billing", "c-quebec", "c-french", "a-support", "c-any", "c-english"]
    with translation.override("en"):
        order = shortcuts(canned.replies_for(desk["max"]))
    assert order == ["c-english", "a-support", "b-billing", "c-any", "c-french", "c-quebec"]


def test_it_searches_shortcut_title_and_body_case_insensitively(desk: dict[str, Any]):
    reply("thanks", title="Thank you", body="We REFUND within 5 days.")
    reply("policy", title="Refund policy", body="See the site.")
    reply("refund", title="Money back", body="Done.")
    reply("hello", title="Greeting", body="Hi!")
    assert shortcuts(canned.replies_for(desk["otto"], q="Refund")) == [
        "refund", "policy", "thanks"]
    assert shortcuts(canned.replies_for(desk["otto"], q="  GREET ")) == ["hello"]
    assert canned.replies_for(desk["otto"], q="nothing like it") == []


def test_it_lets_owners_leads_and_staff_write_and_nobody_else(desk: dict[str, Any]):
    data = {"shortcut": "/Refund", "title": "  Refund   policy ", "body": " Hello {{x}} ",
            "language": "FR-CA"}
    mine = canned.create_reply(desk["max"], data, scope="personal")
    assert (mine.shortcut, mine.title, mine.body, mine.language, mine.owner) == (
        "refund", "Refund policy", "Hello {{x}}", "fr-ca", desk["max"])
    team_reply = canned.create_reply(desk["lea"], data, scope="team", team=desk["billing"])
    assert team_reply.team == desk["billing"] and team_reply.owner is None
    with pytest.raises(services.InvalidInput) as refused:
        canned.create_reply(desk["max"], data, scope="team", team=desk["billing"])
    assert (refused.value.code, refused.value.status) == ("forbidden", 403)
    with pytest.raises(services.InvalidInput):
        canned.create_reply(desk["lea"], data, scope="team", team=desk["support"])
    with pytest.raises(services.InvalidInput):
        canned.create_reply(desk["lea"], data, scope="everyone")
    staff = make_user("stella", is_staff=True)
    assert canned.create_reply(staff, data, scope="everyone").scope == "everyone"
    # Changing or deleting someone else's: as if it did not exist.
    with pytest.raises(services.NotFound):
        canned.update_reply(desk["sam"], mine, {**data, "title": "Mine now"})
    with pytest.raises(services.NotFound):
        canned.delete_reply(desk["max"], team_reply)
    canned.update_reply(desk["lea"], team_reply, {**data, "title": "New title"})
    team_reply.refresh_from_db()
    assert team_reply.title == "New title"
    canned.delete_reply(desk["lea"], team_reply)
    assert not CannedReply.objects.filter(pk=team_reply.pk).exists()


@pytest.mark.parametrize(("field", "value", "fragment"), [
    ("shortcut", "has space", "letters, digits"),
    ("shortcut", "x" * 41, "at most 40"),
    ("shortcut", "", "required"),
    ("shortcut", "a\x00b", "NUL"),
    ("title", "t" * 121, "at most 120"),
    ("title", "   ", "required"),
    ("body", "b" * 32_001, "32,000"),
    ("body", 12, "must be a string"),
    ("language", "english please", "a code such as"),
    ("title", "\ud800", "Unicode"),
])
def test_it_refuses_bad_fields_clearly(desk: dict[str, Any], field: str, value: Any,
                                       fragment: str):
    data = {"shortcut": "ok", "title": "Ok", "body": "Body", "language": "", field: value}
    with pytest.raises(services.InvalidInput) as refused:
        canned.create_reply(desk["max"], data, scope="personal")
    assert refused.value.field == field
    assert fragment in refused.value.message
    assert not CannedReply.objects.exists()


def test_it_keeps_shortcuts_unique_per_owner_team_and_everyone(desk: dict[str, Any]):
    data = {"shortcut": "hi", "title": "Hi", "body": "Hi"}
    canned.create_reply(desk["max"], data, scope="personal")
    canned.create_reply(desk["sam"], data, scope="personal")  # another owner: fine
    canned.create_reply(desk["lea"], data, scope="team", team=desk["billing"])
    add_member(desk["support"], desk["lea"], lead=True)
    canned.create_reply(desk["lea"], data, scope="team", team=desk["support"])  # another team
    for user, scope, team in ((desk["max"], "personal", None),
                              (desk["lea"], "team", desk["billing"])):
        with pytest.raises(services.InvalidInput) as refused:
            canned.create_reply(user, data, scope=scope, team=team)
        assert "/hi" in refused.value.message and refused.value.field == "shortcut"
    # Saving a reply under its own shortcut is no clash; taking another's is.
    own = CannedReply.objects.get(owner=desk["max"])
    canned.update_reply(desk["max"], own, {**data, "title": "Hello"})
    canned.create_reply(desk["max"], {**data, "shortcut": "bye"}, scope="personal")
    with pytest.raises(services.InvalidInput):
        canned.update_reply(desk["max"], own, {**data, "shortcut": "bye"})


# The API ---------------------------------------------------------------------------------------


def test_it_lists_replies_rendered_against_the_conversation(desk: dict[str, Any]):
    reply("refund", scope="team", team=desk["billing"], title="Refund",
          body="Hello {{customer.external_user_id}}, your {{customer.metadata.plan}} plan: "
               "{{customer.metadata.renewal}}. — {{user.first_name}} ({{agent.name}})")
    client = logged_in(desk["max"])  # a team member, not the conversation's owner
    r = client.get(URL, {"q": "ref", "conversation": str(desk["conversation"].pk)})
    assert r.status_code == 200
    assert r["Cache-Control"] == "private, no-store"
    (data,) = r.json()["data"]
    assert data == {
        "id": data["id"], "title": "Refund", "shortcut": "refund",
        "body": CannedReply.objects.get().body, "language": "", "scope": "team",
        "team": "billing",
        "rendered": "Hello C-42, your gold plan: {{customer.metadata.renewal}}. — Max "
                    "(Demo agent)",
        "missing": ["customer.metadata.renewal"],
    }
    # Without a conversation: only the user's own values.
    (data,) = client.get(URL).json()["data"]
    assert data["missing"] == ["customer.external_user_id", "customer.metadata.plan",
                               "customer.metadata.renewal", "agent.name"]


def test_it_answers_hostile_requests_clearly(desk: dict[str, Any], demo_agent: Agent,
                                             caplog: Any):
    caplog.set_level(logging.WARNING)
    reply("all")
    client = Client(enforce_csrf_checks=True)
    assert client.get(URL).status_code == 401
    client.force_login(desk["otto"])
    foreign = desk["conversation"]  # Billing's: Otto is in no team
    for conversation in (str(foreign.pk), "00000000-0000-4000-8000-000000000000",
                         "not-a-uuid", "1" * 5000):
        r = client.get(URL, {"conversation": conversation})
        assert r.status_code == 404, conversation
        assert r.json()["error"]["code"] == "not_found"
    r = client.get(URL, {"q": "x" * 201})
    assert r.status_code == 422
    assert r.json()["error"] == {"code": "invalid",
                                 "message": "q must be at most 200 characters.",
                                 "details": {"field": "q"}}
    r = client.get(URL, {"q": "a\x00b"})
    assert r.status_code == 400
    assert "NUL" in r.json()["error"]["message"]
    r = client.get(URL + "?q=%ED%A0%80")  # a lone surrogate's bytes: not UTF-8
    assert r.status_code in (200, 400)
    # The list is read-only: a write with a bad JSON body is refused by method first.
    client.get("/")
    r = client.post(URL, data="{not json", content_type="application/json",
                    HTTP_X_CSRFTOKEN=client.cookies["csrftoken"].value)
    assert r.status_code == 405 and r["Allow"] == "GET"
    # The longest query allowed still answers.
    assert client.get(URL, {"q": "é" * 200}).json() == {"data": []}
    assert CannedReply.objects.count() == 1
    no_tracebacks(caplog)


# The management pages ----------------------------------------------------------------------------


def test_it_gives_a_teams_replies_page_to_its_leads_only(desk: dict[str, Any], caplog: Any):
    caplog.set_level(logging.WARNING)
    page = "/teams/billing/replies/"
    existing = reply("bill", scope="team", team=desk["billing"])
    for name in ("max", "sam", "otto"):
        client = logged_in(desk[name])
        assert client.get(page).status_code == 404, name
        assert client.post(page, {"shortcut": "x", "title": "X", "body": "X"}).status_code == 404
        assert client.post(f"{page}{existing.pk}/delete").status_code == 404
    assert logged_in(desk["lea"]).get("/teams/nope/replies/").status_code == 404
    assert Client().get(page).status_code == 302  # to the login page
    lea = logged_in(desk["lea"])
    r = lea.get(page)
    assert r.status_code == 200
    assert b"/bill" in r.content and b"Canned replies of Billing" in r.content
    r = lea.post(page, {"shortcut": "refund", "title": "Refund", "body": "Hi {{user.first_name}}",
                        "language": "en"}, follow=True)
    assert r.redirect_chain == [(page, 302)]
    assert "Canned reply “/refund” added." in r.content.decode()
    created = CannedReply.objects.get(shortcut="refund")
    assert (created.scope, created.team, created.owner) == ("team", desk["billing"], None)
    # A refused field is shown on the form; nothing is stored.
    r = lea.post(page, {"shortcut": "refund", "title": "Again", "body": "x"})
    assert r.status_code == 400
    assert "already taken" in r.content.decode()
    r = lea.post(f"{page}{created.pk}/", {"shortcut": "refund", "title": "Money back",
                                          "body": "Edited", "language": ""})
    assert r.status_code == 302
    created.refresh_from_db()
    assert (created.title, created.body) == ("Money back", "Edited")
    r = lea.post(f"{page}{created.pk}/delete", follow=True)
    assert "Canned reply “/refund” deleted." in r.content.decode()
    assert not CannedReply.objects.filter(pk=created.pk).exists()
    # Her personal replies are not on the team's page, nor the team's on hers.
    assert lea.get(f"/replies/{existing.pk}/").status_code == 404
    assert lea.get(f"{page}{2**63}/").status_code == 404
    no_tracebacks(caplog)


def test_it_lets_every_user_manage_personal_replies(desk: dict[str, Any]):
    otto = logged_in(desk["otto"])
    r = otto.get("/replies/")
    assert r.status_code == 200 and b"My canned replies" in r.content
    assert b'href="/replies/"' in r.content  # the header's link
    otto.post("/replies/", {"shortcut": "sig", "title": "Signature", "body": "— {{user.username}}"})
    mine = CannedReply.objects.get()
    assert (mine.scope, mine.owner) == ("personal", desk["otto"])
    # Another user's reply is not there for anyone else.
    sam = logged_in(desk["sam"])
    assert sam.get(f"/replies/{mine.pk}/").status_code == 404
    assert sam.post(f"/replies/{mine.pk}/delete").status_code == 404
    assert b"/sig" not in sam.get("/replies/").content
    # The picker offers it to its owner, rendered.
    (data,) = otto.get(URL, {"q": "sig"}).json()["data"]
    assert data["rendered"] == "— otto"
    # Leads see a link to their team's page.
    assert b'href="/teams/billing/replies/"' in logged_in(desk["lea"]).get("/replies/").content


def test_it_checks_the_admins_replies_with_the_same_rules(desk: dict[str, Any],
                                                          staff_client: Client):
    reply("hi", scope="team", team=desk["billing"])
    add = "/admin/conversations/cannedreply/add/"
    base = {"title": "Hi", "body": "Hello", "language": "", "owner": "", "team": ""}
    r = staff_client.post(add, {**base, "shortcut": "hi", "scope": "team",
                                "team": desk["billing"].pk})
    assert r.status_code == 200 and "already taken" in r.content.decode()
    r = staff_client.post(add, {**base, "shortcut": "fine", "scope": "everyone",
                                "language": "english please"})
    assert r.status_code == 200 and "a code such as" in r.content.decode()
    r = staff_client.post(add, {**base, "shortcut": "x", "scope": "team"})
    assert r.status_code == 200 and "needs its team" in r.content.decode()
    r = staff_client.post(add, {**base, "shortcut": "hi", "scope": "everyone"})
    assert r.status_code == 302
    assert CannedReply.objects.filter(scope="everyone", shortcut="hi").exists()


def test_it_documents_the_endpoint_in_the_openapi_schema(client: Client):
    spec = json.loads(client.get("/api/v1/openapi.json").content)
    operation = spec["paths"]["/api/v1/canned-replies"]["get"]
    assert operation["operationId"] == "listCannedReplies"
    assert set(spec["components"]["schemas"]["CannedReply"]["required"]) == {
        "id", "title", "shortcut", "body", "language", "scope", "team", "rendered", "missing"}
