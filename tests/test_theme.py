"""The colour theme cookie (chatsite/theme.py) and `data-theme` on every page (issue 11 §4)."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import User
from django.test import Client

pytestmark = pytest.mark.django_db


@pytest.fixture
def user(db) -> User:
    return User.objects.create_user("tess", password="pw-theme-123")


@pytest.fixture
def client_in(user: User) -> Client:
    c = Client()
    c.force_login(user)
    return c


def data_theme(html: str) -> str:
    match = re.search(r'<html[^>]*\sdata-theme="([^"]*)"', html)
    assert match, "no data-theme on <html>"
    return match.group(1)


@pytest.mark.parametrize("value", ["light", "dark", "auto"])
def test_it_sets_each_valid_theme_and_renders_it(client_in: Client, value: str):
    response = client_in.post("/theme", {"theme": value, "next": "/?q=x"})
    assert response.status_code == 302
    assert response["Location"] == "/?q=x"
    cookie = response.cookies["theme"]
    assert cookie.value == value
    assert cookie["samesite"] == "Lax"
    assert cookie["httponly"] is True
    assert int(cookie["max-age"]) == 365 * 24 * 3600
    assert data_theme(client_in.get("/").content.decode()) == value


@pytest.mark.parametrize(
    "value",
    ["", "DARK", "dark ", "blue", '"><script>alert(1)</script>', "dark;light", "a" * 5000, "\x00"],
)
def test_it_refuses_hostile_values(client_in: Client, value: str):
    response = client_in.post("/theme", {"theme": value, "next": "/"})
    assert response.status_code == 400
    assert "theme" not in response.cookies


def test_it_refuses_a_missing_value_and_get(client_in: Client):
    assert client_in.post("/theme", {}).status_code == 400
    assert client_in.get("/theme?theme=dark").status_code == 405


@pytest.mark.parametrize(
    "target", ["https://evil.example/", "//evil.example/x", "javascript:alert(1)", "\\\\evil", ""]
)
def test_it_never_redirects_off_site(client_in: Client, target: str):
    response = client_in.post("/theme", {"theme": "dark", "next": target})
    assert response.status_code == 302
    assert response["Location"] == "/"


@pytest.mark.parametrize("cookie", ["blue", '"><script>x</script>', "", "DARK"])
def test_it_ignores_a_hostile_cookie(client_in: Client, cookie: str):
    client_in.cookies["theme"] = cookie
    html = client_in.get("/").content.decode()
    assert data_theme(html) == "auto"
    assert "<script>x" not in html


def test_it_requires_csrf(user: User):
    c = Client(enforce_csrf_checks=True)
    c.force_login(user)
    response = c.post("/theme", {"theme": "dark"})
    assert response.status_code == 403
    assert "theme" not in response.cookies
    c.get("/accounts/login/")
    token = c.cookies["csrftoken"].value
    response = c.post("/theme", {"theme": "dark", "csrfmiddlewaretoken": token})
    assert response.status_code == 302
    assert response.cookies["theme"].value == "dark"


def test_it_works_logged_out_and_renders_the_switcher(client: Client):
    html = client.get("/accounts/login/").content.decode()
    assert data_theme(html) == "auto"
    assert 'id="theme-form"' in html
    assert 'name="csrfmiddlewaretoken"' in html.split('id="theme-form"')[1].split("</form>")[0]
    client.cookies["theme"] = "dark"
    html = client.get("/accounts/login/").content.decode()
    assert data_theme(html) == "dark"
    assert 'value="dark" aria-pressed="true"' in html


def test_it_renders_on_the_chat_and_stats_pages(client_in: Client, user: User):
    client_in.cookies["theme"] = "light"
    html = client_in.post("/conversations/new", {"title": "Theme"}, follow=True).content.decode()
    assert data_theme(html) == "light"
    assert 'id="shortcuts-dialog"' in html
    user.is_superuser = user.is_staff = True
    user.save()
    assert data_theme(client_in.get("/stats/").content.decode()) == "light"
