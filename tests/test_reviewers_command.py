"""`manage.py reviewers add|remove|list`."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.contrib.auth.models import Group, Permission
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client

from tests.conftest import ensure_reviewer_group

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _reviewer_group(db: Any) -> None:
    ensure_reviewer_group()


def run(*args: str) -> str:
    out = StringIO()
    call_command("reviewers", *args, stdout=out)
    return out.getvalue()


def is_reviewer(user: Any) -> bool:
    return user.groups.filter(name="reviewer").exists()


def test_it_adds_a_reviewer_with_admin_access(alice: Any):
    assert run("add", "alice") == "alice is now a reviewer\n"

    alice.refresh_from_db()
    assert alice.is_staff is True
    assert is_reviewer(alice)
    assert alice.has_perm("conversations.export_conversation")
    assert alice.has_perm("conversations.view_stats")
    assert not alice.has_perm("conversations.change_agent")
    client = Client()
    client.force_login(alice)
    assert client.get("/admin/conversations/conversation/").status_code == 200
    assert client.get("/stats/").status_code == 200
    # Again: nothing to do, not an error.
    assert run("add", "alice") == "alice is already a reviewer\n"


def test_it_removes_a_reviewer_and_their_admin_access(alice: Any):
    run("add", "alice")
    assert run("remove", "alice") == "alice is no longer a reviewer\n"

    alice.refresh_from_db()
    assert alice.is_staff is False
    assert not is_reviewer(alice)
    client = Client()
    client.force_login(alice)
    assert client.get("/admin/conversations/conversation/").status_code == 302
    assert client.get("/stats/").status_code == 403


def test_it_keeps_admin_access_that_other_roles_need(staff: Any, bob: Any):
    run("add", "root")
    assert run("remove", "root") == "root is no longer a reviewer (keeps admin access: other " \
        "roles)\n"
    staff.refresh_from_db()
    assert staff.is_staff is True

    bob.user_permissions.add(Permission.objects.get(codename="change_agent"))
    run("add", "bob")
    run("remove", "bob")
    bob.refresh_from_db()
    assert bob.is_staff is True
    assert not is_reviewer(bob)


def test_it_lists_reviewers(alice: Any, bob: Any):
    assert run("list") == "no reviewers\n"
    run("add", "bob")
    run("add", "alice")
    alice.is_staff = False
    alice.save()
    assert run("list") == "alice\tno admin access: is_staff is off\nbob\n"


@pytest.mark.parametrize(("args", "message"), [
    (("add", "nobody"), "no user named 'nobody'"),
    (("remove", "nobody"), "no user named 'nobody'"),
    (("remove", "alice"), "'alice' is not a reviewer"),
])
def test_it_fails_with_one_clear_line(alice: Any, args: tuple[str, ...], message: str):
    with pytest.raises(CommandError) as caught:
        run(*args)
    assert str(caught.value) == message


def test_it_refuses_inactive_users(alice: Any):
    alice.is_active = False
    alice.save()
    with pytest.raises(CommandError) as caught:
        run("add", "alice")
    assert str(caught.value) == "user 'alice' is inactive; activate them first"


def test_it_explains_a_missing_group(alice: Any):
    Group.objects.filter(name="reviewer").delete()
    with pytest.raises(CommandError) as caught:
        run("list")
    assert str(caught.value) == "the 'reviewer' group does not exist: run `manage.py migrate` " \
        "first"
