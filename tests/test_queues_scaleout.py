"""Claiming across two real Daphne processes on PostgreSQL (issue 13 §3): four reviewers, two
on each process, claim and complete from one queue at once; no item is ever given twice."""

from __future__ import annotations

import asyncio
import json
from collections import Counter

import httpx
import pytest

from tests.cluster import seed
from tests.fakevendor import FakeVendor
from tests.livesrv import LiveServer

pytestmark = pytest.mark.scaleout

ITEMS = 40
REVIEWERS = ["rev1", "rev2", "rev3", "rev4"]


async def review_until_empty(server: LiveServer, session: str, queue_id: int) -> list[int]:
    claimed = []
    async with httpx.AsyncClient(base_url=server.url, cookies={"sessionid": session},
                                 timeout=30) as client:
        await client.get("/")
        headers = {"X-CSRFToken": client.cookies.get("csrftoken") or "",
                   "Origin": server.url, "Referer": server.url + "/"}
        while True:
            answer = await client.post(f"/api/v1/review/queues/{queue_id}/claim",
                                       headers=headers)
            if answer.status_code == 204:
                return claimed
            assert answer.status_code == 200, answer.text
            item = answer.json()["item"]
            claimed.append(item["id"])
            done = await client.post(
                f"/api/v1/review/items/{item['id']}/complete", headers=headers,
                json={"scores": [{"config": "ok", "value": True}]})
            assert done.status_code == 200, done.text


async def test_it_never_gives_one_item_to_two_reviewers(
    pair: list[LiveServer], migrated: LiveServer, vendor: FakeVendor,
):
    _session, conversation_id = seed(migrated, vendor)
    sessions = [migrated.session_for(name) for name in REVIEWERS]
    queue_id = int(migrated.shell(
        "from django.contrib.auth import get_user_model\n"
        "from django.contrib.auth.models import Group\n"
        "from conversations.models import Conversation, Message, ReviewQueue, ScoreConfig\n"
        "from conversations.services import queues\n"
        f"for u in get_user_model().objects.filter(username__in={REVIEWERS!r}):\n"
        "    u.is_staff = True\n"
        "    u.save()\n"
        "    u.groups.add(Group.objects.get(name='reviewer'))\n"
        "q = ReviewQueue.objects.create(name='load', reviewer_group=True)\n"
        "q.configs.add(ScoreConfig.objects.create(name='ok', kind='boolean'))\n"
        f"c = Conversation.objects.get(pk={conversation_id!r})\n"
        f"for i in range({ITEMS}):\n"
        "    m = Message.objects.create(conversation=c, seq=i, role='assistant', content='a')\n"
        "    queues.enqueue(q, conversation=c, message=m, reason='manual')\n"
        "print(q.pk)"
    ))
    a, b = pair
    servers = [a, b, a, b]
    results = await asyncio.gather(*[
        review_until_empty(server, session, queue_id)
        for server, session in zip(servers, sessions, strict=True)])
    every = [item for claimed in results for item in claimed]
    assert len(every) == ITEMS and len(set(every)) == ITEMS, Counter(every).most_common(3)
    assert all(results), "each reviewer got some of the work"
    stored = json.loads(migrated.shell(
        "import json\n"
        "from conversations.models import QueueItem, Score\n"
        "print(json.dumps([QueueItem.objects.filter(status='done').count(),"
        " QueueItem.objects.exclude(status='done').count(), Score.objects.count(),"
        " sorted(set(QueueItem.objects.values_list('completed_by__username', flat=True)))]))"
    ))
    assert stored == [ITEMS, 0, ITEMS, REVIEWERS]
