"""Site-wide headers and start-up settings: Content-Security-Policy on every page,
`Cache-Control: private, no-store` on everything a signed-in user receives, and no start
without SECRET_KEY when DEBUG is off."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest
from django.test import AsyncClient, Client

from conversations.models import Agent, Conversation, Message
from tests.livesrv import ROOT, free_port, server_env
from tests.test_browser import browser  # noqa: F401 - the Chromium fixture

NO_STORE = {"private", "no-store"}


def directives(response: Any) -> dict[str, list[str]]:
    policy = response["Content-Security-Policy"]
    parsed: dict[str, list[str]] = {}
    for part in policy.split(";"):
        name, *values = part.split()
        parsed[name] = values
    return parsed


def cache_control(response: Any) -> set[str]:
    return {d.strip() for d in response.get("Cache-Control", "").split(",") if d.strip()}


@pytest.fixture
def transcript(conversation: Conversation) -> Conversation:
    Message.objects.create(conversation=conversation, seq=0, role="user", content="refund?")
    Message.objects.create(conversation=conversation, seq=1, role="assistant",
                           content="| a | b |\n|--:|:-:|\n| 1 | 2 |")
    return conversation


# Content-Security-Policy -------------------------------------------------------------------


@pytest.mark.django_db
def test_it_sends_the_policy_on_every_page(alice_client: Client, transcript: Conversation):
    for url in ["/", f"/c/{transcript.id}/", "/conversations/new", "/accounts/login/",
                "/api/v1/conversations"]:
        response = alice_client.get(url)
        assert response.status_code == 200, url
        csp = directives(response)
        assert csp["script-src"] == ["'self'"], url
        assert csp["style-src"] == ["'self'"], url
        assert csp["object-src"] == ["'none'"], url
        assert csp["frame-ancestors"] == ["'none'"], url
        assert csp["base-uri"] == ["'self'"], url
        assert csp["form-action"] == ["'self'"], url
        assert csp["default-src"] == ["'self'"], url
    assert "unsafe" not in response["Content-Security-Policy"]


@pytest.mark.django_db
def test_it_allows_websockets_to_the_request_host_only(alice_client: Client, settings: Any):
    settings.ALLOWED_HOSTS = ["chat.example.com", "testserver"]
    response = alice_client.get("/", HTTP_HOST="chat.example.com")
    assert directives(response)["connect-src"] == [
        "'self'", "ws://chat.example.com", "wss://chat.example.com"]
    response = alice_client.get("/")
    assert directives(response)["connect-src"] == ["'self'", "ws://testserver", "wss://testserver"]


@pytest.mark.django_db
def test_it_sends_the_policy_on_admin_and_stats_pages(
    reviewer_client: Client, transcript: Conversation
):
    for url in ["/admin/", "/admin/conversations/conversation/",
                f"/admin/conversations/conversation/{transcript.pk}/change/", "/stats/"]:
        response = reviewer_client.get(url)
        assert response.status_code == 200, url
        assert directives(response)["script-src"] == ["'self'"], url


@pytest.mark.django_db
def test_it_renders_no_inline_script_or_style_attribute(
    alice_client: Client, reviewer_client: Client, transcript: Conversation
):
    pages = [alice_client.get(u) for u in ["/", f"/c/{transcript.id}/", "/conversations/new"]]
    pages += [reviewer_client.get(u) for u in [
        f"/admin/conversations/conversation/{transcript.pk}/change/", "/stats/",
        "/admin/conversations/label/"]]
    for response in pages:
        html = response.content.decode()
        assert " style=" not in html, response.request["PATH_INFO"]
        assert " onclick=" not in html and " onload=" not in html
        for chunk in html.split("<script")[1:]:
            tag = chunk.split(">", 1)[0]
            # A script element either loads a file or is a json_script data block.
            assert "src=" in tag or 'type="application/json"' in tag, tag
    # Markdown table alignment reaches the transcript as classes, not style attributes.
    assert 'class="align-right"' in pages[3].content.decode()


# Cache-Control ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_it_keeps_every_answer_to_a_user_out_of_caches(
    alice_client: Client, transcript: Conversation
):
    reply = transcript.messages.get(seq=1)
    for url in ["/", "/?q=refund", f"/c/{transcript.id}/", "/api/v1/conversations",
                f"/api/v1/conversations/{transcript.id}", f"/c/{transcript.id}/delete",
                f"/api/v1/messages/{reply.id}/feedback", "/api/v1/conversations/nope"]:
        response = alice_client.get(url)
        assert NO_STORE <= cache_control(response), (url, response.status_code)


@pytest.mark.django_db
def test_it_keeps_review_pages_and_exports_out_of_caches(
    reviewer_client: Client, transcript: Conversation
):
    urls = ["/admin/conversations/conversation/",
            f"/admin/conversations/conversation/{transcript.pk}/change/", "/stats/",
            "/api/v1/conversations/export?format=csv", "/api/v1/conversations/export?format=jsonl"]
    for url in urls:
        response = reviewer_client.get(url)
        assert response.status_code == 200, url
        assert NO_STORE <= cache_control(response), url
    export = reviewer_client.post("/admin/conversations/conversation/", {
        "action": "export_jsonl", "_selected_action": [str(transcript.pk)]})
    assert export.status_code == 200
    body = b"".join(export.streaming_content) if export.streaming else export.content
    assert b"refund?" in body
    assert NO_STORE <= cache_control(export)


@pytest.mark.django_db(transaction=True)
async def test_it_keeps_answers_out_of_caches_on_the_async_path(alice: Any, demo_agent: Agent):
    # Daphne runs the middleware chain asynchronously (the async branch of no_store_for_users).
    client = AsyncClient()
    await client.aforce_login(alice)
    response = await client.get("/api/v1/conversations")
    assert response.status_code == 200
    assert NO_STORE <= cache_control(response)
    anonymous = await AsyncClient().get("/")  # the redirect to the login page
    assert anonymous.status_code == 302
    assert "no-store" not in cache_control(anonymous)


@pytest.mark.django_db
def test_it_leaves_anonymous_and_public_answers_cacheable(alice_client: Client):
    # (Django's login view marks itself never_cache on its own.)
    redirect = Client().get(f"/c/{'0' * 8}-0000-0000-0000-{'0' * 12}/")
    assert redirect.status_code == 302
    assert "no-store" not in cache_control(redirect)
    schema = alice_client.get("/api/v1/openapi.json")  # no user data, marked public by its view
    assert schema.status_code == 200
    assert "no-store" not in cache_control(schema)


# SECRET_KEY ---------------------------------------------------------------------------------


def production_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("SECRET_KEY", "DEBUG", "DJANGO_SETTINGS_MODULE")}
    env["DEBUG"] = "0"
    env.update(extra)
    return env


def manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own manage.py
        [sys.executable, str(ROOT / "manage.py"), *args], env=env, cwd=ROOT,
        capture_output=True, text=True, timeout=120, check=False,
    )


def test_it_refuses_to_run_commands_without_a_secret_key():
    done = manage(production_env(), "check")
    assert done.returncode != 0
    assert "(chatsite.E001) SECRET_KEY is not set" in done.stderr
    ok = manage(production_env(SECRET_KEY="k" * 60), "check")
    assert ok.returncode == 0, ok.stderr
    debug = manage(production_env(DEBUG="1"), "check")  # `make run`: a fixed development key
    assert debug.returncode == 0, debug.stderr


def test_it_refuses_to_start_daphne_without_a_secret_key(tmp_path: Any):
    env = production_env(DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}")
    done = subprocess.run(  # noqa: S603
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(free_port()),
         "chatsite.asgi:application"],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode != 0
    assert "SECRET_KEY is not set and DEBUG is off" in done.stderr
    assert "chatsite.E001" in done.stderr


def test_it_gives_every_test_server_process_the_same_key():
    first, second = (server_env("sqlite:///x", free_port()) for _ in range(2))
    assert first["SECRET_KEY"] == second["SECRET_KEY"] != ""
    assert first["DJANGO_SETTINGS_MODULE"] == "chatsite.settings"


# In a real browser ---------------------------------------------------------------------------

# Every CSP violation the page reports, from the DOM event (console messages are checked too).
RECORD_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__cspViolations.push(
    `${e.violatedDirective} ${e.blockedURI} ${e.sourceFile}:${e.lineNumber}`);
});
"""


@pytest.mark.browser
def test_it_reports_no_csp_violation_in_chromium(tmp_path: Any, browser: Any):  # noqa: F811
    from tests.livesrv import live_server

    with live_server(tmp_path) as server:
        server.shell("from django.contrib.auth.models import User; "
                     "User.objects.create_superuser('root', '', 'csp-pw-123')")
        context = browser.new_context()
        context.add_init_script(RECORD_VIOLATIONS)
        page = context.new_page()
        console: list[str] = []
        page.on("console", lambda m: console.append(m.text))
        page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
        violations: list[str] = []

        def visit(url: str) -> Any:
            response = page.goto(server.url + url)
            page.wait_for_load_state("networkidle")
            violations.extend(page.evaluate("() => window.__cspViolations"))
            return response

        visit("/accounts/login/")
        page.fill("input[name=username]", "root")
        page.fill("input[name=password]", "csp-pw-123")
        page.click("button[type=submit]")
        page.wait_for_url(server.url + "/")
        page.goto(server.url + "/conversations/new")
        page.fill("input[name=title]", "CSP check")
        page.click("main form button[type=submit]")
        page.wait_for_url("**/c/*/")
        # The websocket connected under connect-src, and a streamed markdown reply (tables,
        # highlighted code) rendered under script-src/style-src 'self'.
        page.wait_for_selector("#connection-status[data-state=connected]")
        page.fill("#composer-input", "Show me a table")
        page.press("#composer-input", "Enter")
        page.wait_for_selector("article.message[data-role=assistant][data-status=completed]",
                               timeout=20_000)
        violations.extend(page.evaluate("() => window.__cspViolations"))
        conversation_id = page.url.rstrip("/").split("/")[-1]
        chat = visit(f"/c/{conversation_id}/")
        assert "script-src 'self'" in chat.headers["content-security-policy"]
        assert {"private", "no-store"} <= {
            d.strip() for d in chat.headers["cache-control"].split(",")}
        page.wait_for_selector("#connection-status[data-state=connected]")
        visit("/")
        page.click("#language-form button[name=language]")  # a form post and its redirect
        page.wait_for_load_state("networkidle")
        violations.extend(page.evaluate("() => window.__cspViolations"))
        for url in ["/stats/", "/admin/", "/admin/conversations/conversation/",
                    f"/admin/conversations/conversation/{conversation_id}/change/",
                    "/admin/conversations/agent/add/", "/admin/conversations/label/add/"]:
            response = visit(url)
            assert response.status == 200, url
        reported = [m for m in console if "Content Security Policy" in m or "pageerror" in m]
        # The recorder works: a style attribute set now is refused and reported.
        page.evaluate("""() => { const d = document.createElement("div");
            d.innerHTML = '<p style="color: red">x</p>'; document.body.append(d); }""")
        page.wait_for_function("() => window.__cspViolations.length > 0")
        control = page.evaluate("() => window.__cspViolations")
        context.close()
    assert control[0].startswith("style-src-attr inline"), control
    assert violations == []
    assert reported == []
