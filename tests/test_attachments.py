"""Attachments (issue 11 §3): upload with the type sniffed from the content, serving to those
who may see the conversation, `message.send` with files, and the files reaching the vendors
(real loopback vendors)."""

from __future__ import annotations

import base64
import json
import struct
import zlib
from pathlib import Path
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from conversations import services
from conversations.models import Agent, Attachment, Conversation, Message
from conversations.providers.base import FilePart
from conversations.providers.dynamiq import DynamiqProvider
from conversations.providers.openai import OpenAIProvider
from tests.conftest import csrf_headers, logged_in
from tests.fakevendor import FakeVendor, json_script, openai_chunk, sse, sse_script
from tests.providers_helpers import AgentSpec
from tests.wsclient import open_socket, wait_for_no_runs

db = database_sync_to_async


def png(width: int = 2, height: int = 2) -> bytes:
    """A real PNG (grey pixels), made here: no binary fixture in the repository."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    raw = b"".join(b"\x00" + b"\x80" * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0,
                                                              0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


GIF = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"  # noqa: E501
EXE = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00" + b"\x00" * 48
HTML = b"<!doctype html><script>alert(document.cookie)</script>"


@pytest.fixture(autouse=True)
def media(settings: Any, tmp_path: Path) -> Path:
    """Each test stores its files in its own folder, never the project's media/."""
    settings.MEDIA_ROOT = str(tmp_path / "media")
    return tmp_path / "media"


def upload_url(conversation: Any) -> str:
    return f"/api/v1/conversations/{conversation.pk}/attachments"


def upload(client: Client, conversation: Any, name: str, data: bytes,
           content_type: str = "application/octet-stream") -> Any:
    return client.post(upload_url(conversation),
                       {"file": SimpleUploadedFile(name, data, content_type)},
                       **csrf_headers(client))


# Uploading ------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_it_stores_a_png_under_its_id_and_serves_it_inline(
        api_client: Client, conversation: Conversation, media: Path):
    data = png()
    r = upload(api_client, conversation, "screen shot.png", data, "image/png")
    assert r.status_code == 201
    body = r.json()
    attachment = Attachment.objects.get()
    assert body == {"id": str(attachment.pk), "name": "screen shot.png", "size": len(data),
                    "content_type": "image/png", "url": f"/api/v1/attachments/{attachment.pk}"}
    # Stored by id: the user's name never reaches the file system.
    assert attachment.file.name == f"attachments/{conversation.pk}/{attachment.pk}"
    assert (media / attachment.file.name).read_bytes() == data
    assert attachment.message is None and attachment.uploaded_by.username == "alice"

    r = api_client.get(body["url"])
    assert r.status_code == 200
    assert b"".join(r.streaming_content) == data
    assert r["Content-Type"] == "image/png"
    assert r["Content-Length"] == str(len(data))
    assert r["Content-Disposition"] == (
        "inline; filename=\"screen shot.png\"; filename*=UTF-8''screen%20shot.png")
    assert r["X-Content-Type-Options"] == "nosniff"
    assert r["Cache-Control"] == "private, no-store"


@pytest.mark.django_db
def test_it_trusts_the_content_not_the_name(api_client: Client, conversation: Conversation):
    # A PNG named .txt (and sent as text/plain) is stored and served as the PNG it is.
    r = upload(api_client, conversation, "notes.txt", png(), "text/plain")
    assert r.status_code == 201 and r.json()["content_type"] == "image/png"
    # Text is told apart by the extension only once the content proved to be text.
    r = upload(api_client, conversation, "orders.csv", b"id,total\nA-1042,49.99\n", "image/png")
    assert r.json()["content_type"] == "text/csv"
    r = upload(api_client, conversation, "data.json", b'{"order": "A-1042"}', "text/html")
    assert r.json()["content_type"] == "application/json"
    r = upload(api_client, conversation, "BMW report", "BMW sales: 12 €\n".encode(), "x/y")
    assert r.json()["content_type"] == "text/plain"  # "BM" is a BMP's magic, but this is text
    served = api_client.get(r.json()["url"])
    assert served["Content-Type"] == "text/plain; charset=utf-8"
    assert served["Content-Disposition"].startswith("attachment; ")


@pytest.mark.django_db
@pytest.mark.parametrize(("name", "data"), [
    ("photo.png", HTML),  # text dressed as an image
    ("photo.png", EXE),  # an executable renamed
    ("setup.exe", EXE),
    ("page.html", b"<html>\x00\x01binary"),  # NUL: not text
    ("latin1.txt", "café".encode("latin-1")),  # not UTF-8
])
def test_it_refuses_content_outside_the_allow_list(
        api_client: Client, conversation: Conversation, media: Path, name: str, data: bytes):
    r = upload(api_client, conversation, name, data, "image/png")
    assert r.status_code == 415
    error = r.json()["error"]
    assert error["code"] == "unsupported_type"
    assert error["details"] == {"field": "file"}
    assert error["message"]
    assert not Attachment.objects.exists()
    assert not media.exists() or not any(p.is_file() for p in media.rglob("*"))


@pytest.mark.django_db
def test_it_refuses_broken_json_empty_and_too_large_files(
        api_client: Client, conversation: Conversation, settings: Any):
    r = upload(api_client, conversation, "data.json", b'{"order": ')
    assert (r.status_code, r.json()["error"]["code"]) == (422, "invalid")
    assert "data.json is not valid JSON" in r.json()["error"]["message"]
    r = upload(api_client, conversation, "empty.txt", b"")
    assert (r.status_code, r.json()["error"]["code"]) == (422, "invalid")
    assert r.json()["error"]["message"] == "The file is empty."
    settings.ATTACHMENT_MAX_BYTES = 1024
    r = upload(api_client, conversation, "big.txt", b"a" * 1025)
    assert (r.status_code, r.json()["error"]["code"]) == (413, "too_large")
    assert r.json()["error"]["message"] == "The file is larger than 1,024 bytes."
    assert upload(api_client, conversation, "fits.txt", b"a" * 1024).status_code == 201
    # A body far over the limit is refused from its Content-Length.
    r = upload(api_client, conversation, "huge.txt", b"a" * 200_000)
    assert (r.status_code, r.json()["error"]["code"]) == (413, "too_large")
    assert Attachment.objects.count() == 1


@pytest.mark.django_db
def test_it_wants_exactly_one_part_named_file(api_client: Client, conversation: Conversation):
    url = upload_url(conversation)
    headers = csrf_headers(api_client)
    r = api_client.post(url, {"other": SimpleUploadedFile("a.txt", b"hi")}, **headers)
    assert (r.status_code, r.json()["error"]["code"]) == (422, "invalid")
    two = [SimpleUploadedFile("a.txt", b"hi"), SimpleUploadedFile("b.txt", b"ho")]
    r = api_client.post(url, {"file": two}, **headers)
    assert (r.status_code, r.json()["error"]["code"]) == (422, "invalid")
    r = api_client.post(url, {"file": SimpleUploadedFile("a.txt", b"hi"), "x": "1"}, **headers)
    assert r.status_code == 422
    r = api_client.post(url, {}, **headers)
    assert r.status_code == 422
    r = api_client.post(url, "just text", content_type="text/plain", **headers)
    assert (r.status_code, r.json()["error"]["code"]) == (415, "invalid")
    r = api_client.post(url, b"--x\r\nbroken", content_type="multipart/form-data; boundary=x",
                        **headers)
    assert r.status_code in (400, 422) and r.json()["error"]["code"] == "invalid"
    assert not Attachment.objects.exists()


@pytest.mark.django_db
def test_it_cleans_hostile_names(api_client: Client, conversation: Conversation, media: Path):
    r = upload(api_client, conversation, "..\\..\\etc/pass\x01wd\u202egnp.txt", b"hello")
    assert r.status_code == 201
    attachment = Attachment.objects.get()
    assert attachment.name == "passwdgnp.txt"
    assert attachment.file.name == f"attachments/{conversation.pk}/{attachment.pk}"
    assert [p.name for p in media.rglob("*") if p.is_file()] == [str(attachment.pk)]
    long_name = "x" * 400 + ".txt"
    assert services.attachments.clean_name(long_name) == "x" * 251 + ".txt"
    assert services.attachments.clean_name("../..") == "file"
    served = api_client.get(r.json()["url"])
    assert served["Content-Disposition"] == (
        "attachment; filename=\"passwdgnp.txt\"; filename*=UTF-8''passwdgnp.txt")
    r = upload(api_client, conversation, "reçu «mars».txt", b"ok")
    served = api_client.get(r.json()["url"])
    assert served["Content-Disposition"] == (
        "attachment; filename=\"re_u _mars_.txt\"; "
        "filename*=UTF-8''re%C3%A7u%20%C2%ABmars%C2%BB.txt")


@pytest.mark.django_db
def test_it_refuses_types_the_agent_cannot_take(alice: Any, api_client: Client,
                                                dimedove_agent: Agent, demo_agent: Agent):
    dove = Conversation.objects.create(owner=alice, agent=dimedove_agent)
    r = upload(api_client, dove, "anim.gif", GIF, "image/gif")
    assert (r.status_code, r.json()["error"]["code"]) == (415, "unsupported_type")
    assert r.json()["error"]["message"] == (
        "This conversation's agent (Dove) cannot take attachments.")
    # The demo takes images and text, not PDFs: the message says what it takes.
    demo = Conversation.objects.create(owner=alice, agent=demo_agent)
    r = upload(api_client, demo, "invoice.pdf", b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n")
    assert (r.status_code, r.json()["error"]["code"]) == (415, "unsupported_type")
    assert r.json()["error"]["message"] == (
        "Demo agent cannot take this kind of file (PDF); it takes PNG, JPEG, WebP, GIF, TXT, "
        "CSV, JSON.")
    assert not Attachment.objects.exists()


@pytest.mark.django_db
def test_it_serves_files_only_to_those_who_may_see_the_conversation(
        api_client: Client, conversation: Conversation, bob: Any, reviewer_client: Client):
    url = upload(api_client, conversation, "a.png", png()).json()["url"]
    bob_client = logged_in(bob)
    # Another user: 404 on the file and on uploading into the conversation.
    r = bob_client.get(url)
    assert (r.status_code, r.json()["error"]["code"]) == (404, "not_found")
    r = bob_client.post(upload_url(conversation), {"file": SimpleUploadedFile("b.png", png())})
    assert (r.status_code, r.json()["error"]["code"]) == (404, "not_found")
    assert Attachment.objects.count() == 1
    assert Client().get(url).status_code == 401
    assert api_client.get("/api/v1/attachments/00000000-0000-0000-0000-000000000000"
                          ).status_code == 404
    # Reviewers read every transcript, files included.
    assert reviewer_client.get(url).status_code == 200


@pytest.mark.django_db
def test_it_rate_limits_uploads_like_other_writes(
        api_client: Client, conversation: Conversation, settings: Any):
    settings.RATE_LIMIT_WRITES_PER_MINUTE = 2
    assert upload(api_client, conversation, "a.txt", b"a").status_code == 201
    assert upload(api_client, conversation, "b.txt", b"b").status_code == 201
    r = upload(api_client, conversation, "c.txt", b"c")
    assert (r.status_code, r.json()["error"]["code"]) == (429, "rate_limited")


@pytest.mark.django_db(transaction=True)
def test_it_deletes_the_files_with_the_conversation(
        api_client: Client, conversation: Conversation, media: Path):
    upload(api_client, conversation, "a.png", png())
    upload(api_client, conversation, "b.txt", b"hello")
    assert len([p for p in media.rglob("*") if p.is_file()]) == 2
    r = api_client.delete(f"/api/v1/conversations/{conversation.pk}", **csrf_headers(api_client))
    assert r.status_code == 204
    assert not Attachment.objects.exists()
    assert [p for p in media.rglob("*") if p.is_file()] == []


# Sending --------------------------------------------------------------------------------------


def _upload_now(client: Client, conversation: Any, name: str, data: bytes) -> str:
    r = upload(client, conversation, name, data)
    assert r.status_code == 201, r.content
    return str(r.json()["id"])


@pytest.mark.django_db(transaction=True)
async def test_it_sends_files_with_a_message_and_the_demo_describes_them(
        api_client: Client, alice: Any, demo_agent: Agent):
    conversation = await db(Conversation.objects.create)(owner=alice, agent=demo_agent)
    image = await db(_upload_now)(api_client, conversation, "screenshot.png", png(64, 64))
    notes = await db(_upload_now)(api_client, conversation, "notes.txt", b"x" * 3000)
    _, sock = await open_socket(api_client, conversation.pk)
    await sock.send({"type": "message.send", "content": "", "client_id": "c-1",
                     "attachments": [image, notes]})
    frames = await sock.recv_until("message.completed")
    user = next(f["message"] for f in frames if f["type"] == "message.created")
    assert user["content"] == "" and user["client_id"] == "c-1"
    assert [(a["id"], a["name"], a["content_type"]) for a in user["attachments"]] == [
        (image, "screenshot.png", "image/png"), (notes, "notes.txt", "text/plain")]
    assert user["attachments"][0]["url"] == f"/api/v1/attachments/{image}"
    reply = frames[-1]["message"]
    assert "I received `screenshot.png` (image/png, " in reply["content"]
    assert "I received `notes.txt` (text/plain, 3 KB)." in reply["content"]
    assert reply["attachments"] == []
    def check() -> None:
        message = Message.objects.get(role="user")
        assert set(Attachment.objects.values_list("message_id", flat=True)) == {message.pk}
        # The conversation took its title from the first file, the message having no text.
        assert Conversation.objects.get().auto_title == "screenshot.png"
        # The transcript (page, API, sync) carries them, in one query for all messages.
        data = api_client.get(f"/api/v1/conversations/{conversation.pk}").json()
        assert [a["name"] for a in data["messages"][0]["attachments"]] == [
            "screenshot.png", "notes.txt"]
    await db(check)()
    # A repeat of the frame is acknowledged, not refused for files already sent.
    await sock.send({"type": "message.send", "content": "", "client_id": "c-1",
                     "attachments": [image, notes]})
    again = await sock.recv()
    assert again["type"] == "message.created" and again["message"]["id"] == user["id"]
    await wait_for_no_runs()
    await sock.close()


@pytest.mark.django_db(transaction=True)
async def test_it_refuses_foreign_used_and_malformed_attachment_ids(
        api_client: Client, conversation: Conversation, alice: Any, demo_agent: Agent):
    other = await db(Conversation.objects.create)(owner=alice, agent=demo_agent)
    foreign = await db(_upload_now)(api_client, other, "other.txt", b"other")
    mine = await db(_upload_now)(api_client, conversation, "mine.txt", b"mine")
    _, sock = await open_socket(api_client, conversation.pk)
    refused = [
        ([foreign], "c-foreign"),
        (["not-a-uuid"], "c-malformed"),
        ([42], "c-number"),
        ("just-one-id", "c-string"),
        ([mine, foreign], "c-mixed"),
        ([str(i) for i in range(11)], "c-eleven"),
    ]
    for ids, client_id in refused:
        await sock.send({"type": "message.send", "content": "Look", "client_id": client_id,
                         "attachments": ids})
        frame = await sock.recv()
        assert frame["type"] == "error" and frame["code"] == "invalid", frame
        assert frame["client_id"] == client_id
        assert frame["message"]
    assert await db(Message.objects.count)() == 0
    assert await db(lambda: Attachment.objects.filter(message__isnull=False).count())() == 0
    # An empty message without files is still refused.
    await sock.send({"type": "message.send", "content": "  ", "client_id": "c-empty",
                     "attachments": []})
    assert (await sock.recv())["code"] == "invalid"
    await sock.assert_usable()
    # Sent once, a file cannot go with another message.
    await sock.send({"type": "message.send", "content": "First", "client_id": "c-1",
                     "attachments": [mine]})
    await sock.recv_until("message.completed")
    await sock.send({"type": "message.send", "content": "Again", "client_id": "c-2",
                     "attachments": [mine]})
    frame = await sock.recv()
    assert (frame["type"], frame["code"], frame["client_id"]) == ("error", "invalid", "c-2")
    assert await db(Message.objects.count)() == 2
    await sock.assert_usable()
    await wait_for_no_runs()
    await sock.close()


@pytest.mark.django_db(transaction=True)
def test_it_sends_the_question_files_again_on_regenerate(
        api_client: Client, conversation: Conversation, alice: Any):
    file_id = _upload_now(api_client, conversation, "order.csv", b"id\nA-1042\n")
    accepted = services.accept_user_message(conversation.pk, alice, content="Summarize",
                                            attachments=[file_id])
    assert accepted.request is not None
    assert accepted.request.attachments == [
        FilePart("order.csv", "text/csv", b"id\nA-1042\n")]
    services.finish_run(accepted.assistant_message.pk, conversation.pk,
                        services.RunOutcome(status="completed", content="Done"))
    again = services.regenerate_reply(conversation.pk, alice,
                                      message_id=accepted.assistant_message.pk)
    assert again.request is not None
    assert again.request.attachments == accepted.request.attachments


# The vendors ----------------------------------------------------------------------------------

OPENAI = AgentSpec(OpenAIProvider, slug="gpt", options={"model": "gpt-test"}, path="/v1")


async def test_it_sends_images_as_data_urls_and_text_inline_to_openai(fake_vendor: FakeVendor):
    fake_vendor.add_route("POST", "/v1/chat/completions", sse_script(
        sse(openai_chunk("A cat.", finish_reason="stop")), sse("[DONE]")))
    image = png()
    request = OPENAI.request(fake_vendor, "What is this?")
    request = type(request)(**{**request.__dict__, "attachments": [
        FilePart("cat.png", "image/png", image),
        FilePart("notes.txt", "text/plain", "Order A-1042 — late".encode())]})
    await OPENAI.collect(request)
    body = fake_vendor.requests[0].json()
    assert body["messages"][-1] == {"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url",
         "image_url": {"url": "data:image/png;base64," + base64.b64encode(image).decode()}},
        {"type": "text", "text": "notes.txt:\n\nOrder A-1042 — late"},
    ]}


DYNAMIQ_CONV = "497f6eca-6276-4993-bfeb-53cbbbba6f08"
DYNAMIQ = AgentSpec(DynamiqProvider, slug="dyn", options={"model_id": "m-1"},
                    token_env="CHATSITE_TEST_DYNAMIQ_TOKEN", vendor_conversation_id=DYNAMIQ_CONV)


def _dynamiq_done() -> bytes:
    envelope = {"id": "e1", "type": "run.completed", "sequence": 1,
                "timestamp": "2026-06-10T09:11:09Z",
                "data": {"object": "run", "status": "completed", "output": "Seen."}}
    return sse(envelope, event="run.completed")


async def test_it_uploads_files_to_dynamiq_then_sends_file_parts(
        fake_vendor: FakeVendor, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("CHATSITE_TEST_DYNAMIQ_TOKEN", "dynamiq_acc_test")
    fake_vendor.add_route("POST", "/v1/files", [
        json_script({"data": {"id": "file-1", "name": "ticket.png", "size": 10,
                              "mime_type": "image/png"}}, 201),
        json_script({"data": {"id": "file-2", "name": "invoice.pdf"}}, 201),
    ])
    fake_vendor.add_route("POST", f"/v3/conversations/{DYNAMIQ_CONV}/messages",
                          sse_script(_dynamiq_done()))
    image = png()
    pdf = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n"
    request = DYNAMIQ.request(fake_vendor, "")
    request = type(request)(**{**request.__dict__, "attachments": [
        FilePart("ticket.png", "image/png", image),
        FilePart("invoice.pdf", "application/pdf", pdf)]})
    await DYNAMIQ.collect(request)
    first, second, send = fake_vendor.requests
    assert (first.method, first.path) == ("POST", "/v1/files")
    assert first.headers["authorization"] == "Bearer dynamiq_acc_test"
    assert first.headers["content-type"].startswith("multipart/form-data; boundary=")
    assert b'Content-Disposition: form-data; name="file"; filename="ticket.png"' in first.body
    assert b"Content-Type: image/png" in first.body and image in first.body
    assert pdf in second.body
    assert send.json()["content"] == [
        {"type": "file", "file": {"id": "file-1", "name": "ticket.png"}},
        {"type": "file", "file": {"id": "file-2", "name": "invoice.pdf"}},
    ]


async def test_it_fails_clearly_when_dynamiq_refuses_a_file(fake_vendor: FakeVendor):
    fake_vendor.add_route("POST", "/v1/files", json_script(
        {"error": {"code": "bad_request", "message": "Bad Request",
                   "details": {"file": "too large"}}}, 400))
    request = DYNAMIQ.request(fake_vendor, "Hi")
    request = type(request)(**{**request.__dict__, "attachments": [
        FilePart("big.png", "image/png", png())]})
    with pytest.raises(Exception) as caught:
        await DYNAMIQ.collect(request)
    assert getattr(caught.value, "code", "") == "vendor_bad_request"
    assert "file: too large" in str(caught.value)
    assert [r.path for r in fake_vendor.requests] == ["/v1/files"]  # the message was not sent


@pytest.mark.django_db(transaction=True)
async def test_it_carries_the_file_to_an_openai_agent_end_to_end(
        alice: Any, openai_agent: Agent, fake_vendor: FakeVendor):
    fake_vendor.add_route("POST", "/v1/chat/completions", sse_script(
        sse(openai_chunk("Nice screenshot.", finish_reason="stop")), sse("[DONE]")))
    client = await db(logged_in)(alice)
    await db(client.get)("/")
    conversation = await db(Conversation.objects.create)(owner=alice, agent=openai_agent)
    file_id = await db(_upload_now)(client, conversation, "s.gif", GIF)
    _, sock = await open_socket(client, conversation.pk)
    await sock.send({"type": "message.send", "content": "See", "client_id": "c-1",
                     "attachments": [file_id]})
    frames = await sock.recv_until("message.completed", "message.failed")
    assert frames[-1]["message"]["content"] == "Nice screenshot."
    content = fake_vendor.requests[0].json()["messages"][-1]["content"]
    assert content[1] == {"type": "image_url", "image_url": {
        "url": "data:image/gif;base64," + base64.b64encode(GIF).decode()}}
    await wait_for_no_runs()
    await sock.close()


def test_it_keeps_stored_files_out_of_the_repository(settings: Any, media: Path):
    assert Path(default_storage.location) == media
    assert json.dumps(sorted(services.attachments.ALLOWED_TYPES)) == json.dumps(sorted([
        "application/json", "application/pdf", "image/gif", "image/jpeg", "image/png",
        "image/webp", "text/csv", "text/plain"]))
