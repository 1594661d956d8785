"""Django-side fixtures for the benchmark, run as `python -m bench.djtools <command>` with the same
environment as the servers (DATABASE_URL, SECRET_KEY): one process and one `django.setup()` for
all the seeding, instead of one `manage.py shell -c` per object.

- `setup --vendor-url URL --conversations N --list-conversations M --transcript K`: the bench
  users, the `bench` agent (provider `openai`) pointing at the fake vendor, N empty conversations
  for the streaming scenarios, M conversations for the list pages (one holding a K-message
  transcript), and a logged-in session per user. Prints the ids and session keys as JSON.
- `reap`: marks replies left `streaming` by a killed server as failed, so a later scenario can
  never hit `run_active` on a reused conversation.

Sessions are created directly (`SessionStore` with the auth keys Django's `login()` stores), which
is what logging in through the form would leave in the database, in a millisecond.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import timedelta
from typing import Any

LOREM = (
    "The relay keeps one task per reply and flushes the text about once a second; viewers in "
    "other tabs get coalesced batches. "
)


def _setup_django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")
    import django

    django.setup()


def _session_for(user: Any) -> str:
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.sessions.backends.db import SessionStore

    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    # The backend that loads users (django-axes' backend, listed first, only checks lockouts).
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.set_expiry(24 * 3600)
    session.create()
    assert session.session_key is not None
    return session.session_key


def setup(vendor_url: str, conversations: int, list_conversations: int, transcript: int) -> None:
    from django.contrib.auth import get_user_model
    from django.db import transaction
    from django.utils import timezone

    from conversations.models import Agent, Conversation, Message, ToolCall

    User = get_user_model()
    with transaction.atomic():
        agent, _ = Agent.objects.update_or_create(
            slug="bench",
            defaults={
                "name": "Bench vendor",
                "provider": "openai",
                "base_url": vendor_url,
                "options": {"model": "bench"},
                "is_active": True,
            },
        )
        load_user = User.objects.create_user("bench", password=None)
        list_user = User.objects.create_user("bench-list", password=None)
        now = timezone.now()
        load = Conversation.objects.bulk_create(
            [
                Conversation(
                    owner=load_user, agent=agent, title=f"load {i}", created_at=now, updated_at=now
                )
                for i in range(conversations)
            ],
            batch_size=2000,
        )
        # Spread updated_at so the list's ORDER BY -updated_at has real work, as it would in a
        # year of use.
        listed = Conversation.objects.bulk_create(
            [
                Conversation(
                    owner=list_user,
                    agent=agent,
                    title=f"Customer question #{i}",
                    created_at=now - timedelta(minutes=i),
                    updated_at=now - timedelta(minutes=i),
                )
                for i in range(list_conversations)
            ],
            batch_size=2000,
        )
        long_one = listed[len(listed) // 2]
        messages = []
        for seq in range(1, transcript + 1):
            user_turn = seq % 2 == 1
            messages.append(
                Message(
                    conversation=long_one,
                    seq=seq,
                    role=Message.Role.USER if user_turn else Message.Role.ASSISTANT,
                    content=(LOREM if user_turn else LOREM * 6) + f" ({seq})",
                    status=Message.Status.COMPLETED,
                    created_at=now,
                    completed_at=now,
                    usage=None if user_turn else {"prompt_tokens": 100, "completion_tokens": 200},
                )
            )
        Message.objects.bulk_create(messages, batch_size=1000)
        # Every tenth reply made a tool call: the transcript's prefetch must carry them too.
        ToolCall.objects.bulk_create(
            [
                ToolCall(
                    message=m,
                    index=0,
                    call_id=f"call_{m.seq}",
                    name="lookup_order",
                    arguments='{"order": 42}',
                    arguments_json={"order": 42},
                    result={"status": "shipped"},
                    status=ToolCall.Status.COMPLETED,
                )
                for m in messages
                if m.role == Message.Role.ASSISTANT and m.seq % 20 == 0
            ],
            batch_size=1000,
        )
    json.dump(
        {
            "session": _session_for(load_user),
            "conversations": [str(c.id) for c in load],
            "list_session": _session_for(list_user),
            "list_count": list_conversations,
            "transcript_id": str(long_one.id),
            "transcript_messages": transcript,
        },
        sys.stdout,
    )


def reap() -> None:
    from conversations import services

    services.reap_orphaned_runs(all_streaming=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="chatsite benchmark fixtures")
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("setup")
    s.add_argument("--vendor-url", required=True)
    s.add_argument("--conversations", type=int, required=True)
    s.add_argument("--list-conversations", type=int, required=True)
    s.add_argument("--transcript", type=int, required=True)
    sub.add_parser("reap")
    args = parser.parse_args(argv)
    _setup_django()
    if args.command == "setup":
        setup(args.vendor_url, args.conversations, args.list_conversations, args.transcript)
    else:
        reap()
    return 0


if __name__ == "__main__":
    sys.exit(main())
