"""`manage.py maintenance`: the Procfile's clock process prunes audit records past their
retention, finished task rows over 14 days old and expired sessions; one failed job is logged
and the others still run."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.sessions.backends.db import SessionStore
from django.contrib.sessions.models import Session
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from conversations.management.commands import maintenance
from conversations.models import AuditEvent

pytestmark = pytest.mark.django_db


def task_row(days_ago: float, status: str = "SUCCESSFUL", queue: str = "default") -> DBTaskResult:
    at = timezone.now() - timedelta(days=days_ago)
    row = DBTaskResult.objects.create(
        status=status, args_kwargs={"args": [], "kwargs": {}}, task_path="x.y",
        queue_name=queue, backend_name="default", run_after=at,
        finished_at=at if status != "READY" else None)
    return row


def session(expires_in: timedelta) -> str:
    store = SessionStore()
    store["k"] = "v"
    store.create()
    Session.objects.filter(pk=store.session_key).update(expire_date=timezone.now() + expires_in)
    return store.session_key


@pytest.fixture
def old_and_new(settings: Any) -> dict[str, Any]:
    settings.AUDIT_RETENTION_DAYS = 30
    return {
        "old_event": AuditEvent.objects.create(
            at=timezone.now() - timedelta(days=31), action="logout", actor_name="a").pk,
        "new_event": AuditEvent.objects.create(
            at=timezone.now() - timedelta(days=29), action="logout", actor_name="a").pk,
        "old_task": task_row(15).pk,
        "old_task_other_queue": task_row(15, queue="other").pk,
        "new_task": task_row(13).pk,
        "waiting_task": task_row(40, status="READY").pk,
        "expired": session(timedelta(seconds=-1)),
        "live": session(timedelta(days=1)),
    }


def test_it_prunes_what_is_past_its_time_and_keeps_the_rest(
        old_and_new: dict[str, Any], caplog: pytest.LogCaptureFixture):
    with caplog.at_level(logging.INFO, logger="conversations.maintenance"):
        call_command("maintenance")
    assert set(AuditEvent.objects.values_list("pk", flat=True)) == {old_and_new["new_event"]}
    assert set(DBTaskResult.objects.values_list("pk", flat=True)) == {
        old_and_new["new_task"], old_and_new["waiting_task"]}
    assert set(Session.objects.values_list("pk", flat=True)) == {old_and_new["live"]}
    done = [r.getMessage() for r in caplog.records if r.name == "conversations.maintenance"]
    assert [line.split()[1] for line in done] == [
        "prune_audit", "prune_db_task_results", "clearsessions"]
    assert "deleted 1 audit events and 0 row-change entries older than 30 days" in done[0]


def test_it_runs_the_other_jobs_when_one_fails(
        old_and_new: dict[str, Any], settings: Any, caplog: pytest.LogCaptureFixture):
    settings.AUDIT_RETENTION_DAYS = -1  # prune_audit refuses it
    with pytest.raises(CommandError, match="failed: prune_audit"):
        call_command("maintenance")
    assert AuditEvent.objects.count() == 2
    assert not DBTaskResult.objects.filter(pk=old_and_new["old_task"]).exists()
    assert not Session.objects.filter(pk=old_and_new["expired"]).exists()
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [r.getMessage() for r in errors] == [
        "maintenance: prune_audit failed: CommandError: the retention must be 0 (keep forever) "
        "or a number of days"]
    assert not any(r.exc_info for r in caplog.records)  # a clear line, no traceback


def test_it_runs_again_every_period_with_every(
        old_and_new: dict[str, Any], monkeypatch: pytest.MonkeyPatch):
    rounds: list[float] = []

    class Stop(Exception):
        pass

    def sleep(seconds: float) -> None:
        rounds.append(seconds)
        if len(rounds) == 2:
            raise Stop
        # Between rounds: a new expired session, which the next round removes.
        old_and_new["expired"] = session(timedelta(seconds=-1))

    monkeypatch.setattr(maintenance.time, "sleep", sleep)
    with pytest.raises(Stop):
        call_command("maintenance", "--every", "86400")
    assert rounds == [86400.0, 86400.0]
    assert set(Session.objects.values_list("pk", flat=True)) == {old_and_new["live"]}


def test_it_refuses_a_negative_period():
    with pytest.raises(CommandError, match="--every"):
        call_command("maintenance", "--every", "-5")


@pytest.mark.django_db(transaction=True)
def test_it_holds_no_connection_while_it_sleeps():
    from django.db import connection

    if connection.vendor == "sqlite" and connection.is_in_memory_db():
        pytest.skip("an in-memory SQLite database is never closed (it would be lost)")
    connection.ensure_connection()
    maintenance.release_connections()
    assert connection.connection is None
