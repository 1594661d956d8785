"""Files sent with a message: upload, the type sniffed from the content, access, and the bytes
handed to a provider.

An upload is refused unless its content is one of the allow-listed types (ALLOWED_TYPES): the
binary ones recognised by their magic bytes (`filetype`), the text ones by a careful look at the
whole content (valid UTF-8, no NUL or other control characters, JSON that parses). The name the
browser sent is used only to tell CSV and JSON from plain text once the content proved to be
text, and to refuse a name that claims an image or a PDF the content is not: a name never makes
binary content acceptable. It is kept, cleaned, for display; the stored file is named by the
attachment's id (models.attachment_path).

An attachment is uploaded into a conversation, then sent with one message of that conversation
(`claim`, inside the send's locked transaction); the provider receives its bytes as a `FilePart`.
Its file is deleted from storage once the row's deletion commits (a message, a conversation or
a user deleted).
"""

from __future__ import annotations

import json
import logging
import re
import unicodedata
from collections.abc import Iterable
from functools import partial
from typing import Any
from uuid import UUID

import filetype
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models.signals import post_delete
from django.dispatch import receiver
from django.utils.translation import gettext as _

from conversations.models import Attachment, Conversation, Message
from conversations.providers import capabilities as provider_capabilities
from conversations.providers.base import IMAGE_TYPES, FilePart
from conversations.services.conversations import get_conversation
from conversations.services.errors import InvalidInput, NotFound
from conversations.services.validation import format_count

logger = logging.getLogger(__name__)

PDF_TYPE = "application/pdf"
# Recognised by their magic bytes.
BINARY_TYPES = IMAGE_TYPES | {PDF_TYPE}
# Recognised as text, then told apart by the name's extension.
TEXT_EXTENSIONS = {".csv": "text/csv", ".json": "application/json"}
ALLOWED_TYPES = BINARY_TYPES | {"text/plain", *TEXT_EXTENSIONS.values()}
# Names that claim a binary type: text content under such a name is refused, not relabelled.
BINARY_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".jpe", ".webp", ".gif", ".pdf"})
# For people, in error messages: the allowed types by their usual short names, in this order.
TYPE_LABELS = {
    "image/png": "PNG", "image/jpeg": "JPEG", "image/webp": "WebP", "image/gif": "GIF",
    PDF_TYPE: "PDF", "text/plain": "TXT", "text/csv": "CSV", "application/json": "JSON",
}
# Files per message: ten screenshots or documents cover a support question; more is a
# mistake, and every one is read into memory and sent to the vendor on each run.
MAX_PER_MESSAGE = 10
# The display name's limit (Attachment.name's max_length).
NAME_MAX_CHARS = 255
# Enough bytes for every magic number filetype knows (the longest offset it reads is ~8 KB).
SNIFF_BYTES = 8192
# Control characters text files may hold: tab, line feed, form feed, carriage return, and ESC
# (terminal colours in a pasted log). Any other C0 control, NUL first, means binary.
_TEXT_CONTROLS = re.compile("[\x00-\x08\x0b\x0e-\x1a\x1c-\x1f\x7f]")
# A name's control, format and bidi characters (a right-to-left override can make
# "gpj.exe" read "exe.jpg").
_NAME_DROP = re.compile("[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]")


def max_bytes() -> int:
    return int(settings.ATTACHMENT_MAX_BYTES)


def type_labels(types: Iterable[str]) -> str:
    """"PNG, JPEG, GIF" for people (unknown types by their content type, last)."""
    order = list(TYPE_LABELS)
    ranked = sorted(types, key=lambda t: (order.index(t) if t in order else len(order), t))
    return ", ".join(TYPE_LABELS.get(t, t) for t in ranked)


def accepted_types(conversation: Conversation) -> frozenset[str]:
    """What the conversation's provider can send (Capabilities.attachments), allow-listed."""
    caps = provider_capabilities(conversation.agent.provider, conversation.agent.options)
    return frozenset(caps.attachments) & ALLOWED_TYPES


def clean_name(value: Any) -> str:
    """A file name fit to show and to put in Content-Disposition: the last path part (both
    slashes: Windows browsers send C:\\...), control and bidi characters dropped, NFC, at most
    NAME_MAX_CHARS characters keeping the extension; "file" when nothing is left."""
    name = value if isinstance(value, str) else ""
    name = re.split(r"[/\\]", name)[-1]
    name = unicodedata.normalize("NFC", _NAME_DROP.sub("", name))
    name = " ".join(name.split()).strip(". ")
    if not name:
        return "file"
    if len(name) > NAME_MAX_CHARS:
        stem, dot, ext = name.rpartition(".")
        if dot and 0 < len(ext) <= 16:
            name = stem[: NAME_MAX_CHARS - len(ext) - 1] + "." + ext
        else:
            name = name[:NAME_MAX_CHARS]
    return name


def _extension(name: str) -> str:
    dot = name.rfind(".")
    return name[dot:].lower() if dot > 0 else ""


def _is_text(data: bytes) -> str | None:
    """The content as text when it is UTF-8 text (a BOM allowed), else None."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return None
    if _TEXT_CONTROLS.search(text):
        return None
    return text


def sniff(data: bytes, name: str) -> str:
    """The content type of `data` among ALLOWED_TYPES, or InvalidInput `unsupported_type` (415).
    `name` (already cleaned) only tells CSV and JSON from plain text."""
    guessed = filetype.guess_mime(data[:SNIFF_BYTES])
    if guessed in BINARY_TYPES:
        return str(guessed)
    text = _is_text(data)
    if text is None:
        raise InvalidInput(
            "unsupported_type",
            _("This kind of file cannot be attached. Allowed: %(types)s.")
            % {"types": type_labels(ALLOWED_TYPES)},
            field="file", status=415)
    extension = _extension(name)
    if extension in BINARY_EXTENSIONS:
        # Text dressed up as an image or a PDF: neither relabelled nor stored as what it claims.
        raise InvalidInput(
            "unsupported_type",
            _("The content of %(name)s is not what its name says (it is text).") % {"name": name},
            field="file", status=415)
    content_type = TEXT_EXTENSIONS.get(extension, "text/plain")
    if content_type == "application/json":
        try:
            json.loads(text)
        except (ValueError, RecursionError):
            raise InvalidInput(
                "invalid", _("%(name)s is not valid JSON.") % {"name": name}, field="file",
            ) from None
    return content_type


def upload_attachment(user: Any, conversation_id: UUID | str, upload: Any) -> Attachment:
    """Store `upload` (a Django UploadedFile) in the user's conversation. NotFound for another
    user's conversation; InvalidInput `unsupported_type` (415: not allowed, or not a type the
    conversation's agent can take), `too_large` (413), `invalid` (empty, not valid JSON)."""
    conversation = get_conversation(user, conversation_id)
    accepted = accepted_types(conversation)
    if not accepted:
        raise InvalidInput(
            "unsupported_type",
            _("This conversation's agent (%(agent)s) cannot take attachments.")
            % {"agent": conversation.agent.name or conversation.agent.slug},
            field="file", status=415)
    limit = max_bytes()
    if upload.size is not None and upload.size > limit:
        raise too_large(limit)
    data = upload.read(limit + 1)
    if len(data) > limit:
        raise too_large(limit)
    if not data:
        raise InvalidInput("invalid", _("The file is empty."), field="file")
    name = clean_name(getattr(upload, "name", ""))
    content_type = sniff(data, name)
    if content_type not in accepted:
        raise InvalidInput(
            "unsupported_type",
            _("%(agent)s cannot take this kind of file (%(type)s); it takes %(types)s.")
            % {"agent": conversation.agent.name or conversation.agent.slug,
               "type": TYPE_LABELS.get(content_type, content_type),
               "types": type_labels(accepted)},
            field="file", status=415)
    attachment = Attachment(conversation=conversation, uploaded_by=user, name=name,
                            size=len(data), content_type=content_type)
    # The file first (named by the id, models.attachment_path), then the row; a failed insert
    # leaves no orphan file behind.
    attachment.file.save(str(attachment.id), ContentFile(data), save=False)
    try:
        attachment.save()
    except BaseException:
        default_storage.delete(attachment.file.name)
        raise
    attachment.conversation = conversation
    return attachment


def too_large(limit: int) -> InvalidInput:
    return InvalidInput(
        "too_large",
        _("The file is larger than %(size)s MB.") % {"size": format_count(limit // (1024 * 1024))}
        if limit >= 1024 * 1024 else
        _("The file is larger than %(size)s bytes.") % {"size": format_count(limit)},
        field="file", status=413)


def _may_review(user: Any) -> bool:
    # The review desk's rule (conversations/admin): staff who may view conversations.
    return bool(user.is_authenticated and user.is_active and user.is_staff
                and user.has_perm("conversations.view_conversation"))


def get_attachment(user: Any, attachment_id: UUID | str) -> Attachment:
    """An attachment the user may see: of a conversation they may open (for_user: their own
    and their teams'), or any for a reviewer (the admin transcript shows them). NotFound
    otherwise, the same for a missing one."""
    try:
        attachment = Attachment.objects.select_related("conversation").get(pk=attachment_id)
    except (Attachment.DoesNotExist, ValidationError, ValueError):
        raise NotFound(_("No such attachment.")) from None
    if not _may_review(user) and not Conversation.objects.for_user(user).filter(
            pk=attachment.conversation_id).exists():
        raise NotFound(_("No such attachment."))
    return attachment


def open_attachment(attachment: Attachment) -> Any:
    """The stored file, opened for reading (the caller closes it). NotFound when storage lost
    it (logged: a row without its file is a fault of the deployment)."""
    try:
        return default_storage.open(attachment.file.name, "rb")
    except (FileNotFoundError, OSError):
        logger.warning("attachment %s: file %s is missing from storage", attachment.pk,
                       attachment.file.name)
        raise NotFound(_("No such attachment.")) from None


# Sending -----------------------------------------------------------------------------------


def clean_attachment_ids(value: Any) -> list[UUID]:
    """`message.send`'s `attachments`: absent, null or a list of at most MAX_PER_MESSAGE
    distinct attachment ids (strings)."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidInput("invalid", _("attachments must be a list of attachment ids."),
                           field="attachments")
    if len(value) > MAX_PER_MESSAGE:
        raise InvalidInput(
            "invalid", _("A message may carry at most %(max)s attachments.")
            % {"max": MAX_PER_MESSAGE}, field="attachments")
    ids: list[UUID] = []
    for item in value:
        try:
            if not isinstance(item, str):
                raise ValueError
            pk = UUID(item)
        except ValueError:
            raise InvalidInput("invalid", _("attachments must be a list of attachment ids."),
                               field="attachments") from None
        if pk not in ids:
            ids.append(pk)
    return ids


def claim(conversation: Conversation, ids: list[UUID]) -> list[Attachment]:
    """The attachments `ids` of `conversation` not yet sent with a message, in the order given,
    each of a type the conversation's agent takes. Called under the send's row lock
    (runs._locked), so two sends cannot both take one file. InvalidInput `invalid` otherwise."""
    if not ids:
        return []
    rows = {a.pk: a for a in Attachment.objects.filter(
        conversation=conversation, pk__in=ids, message__isnull=True)}
    if len(rows) != len(ids):
        raise InvalidInput(
            "invalid", _("An attachment is not one of this conversation's unsent files; upload "
                         "it again."), field="attachments")
    accepted = accepted_types(conversation)
    if any(a.content_type not in accepted for a in rows.values()):
        # The agent changed since the upload (an admin edit): refused before any vendor call.
        raise InvalidInput(
            "unsupported_type", _("This conversation's agent cannot take one of these files."),
            field="attachments", status=415)
    return [rows[pk] for pk in ids]


def link(attachments: list[Attachment], message: Message) -> None:
    """Mark the claimed attachments as sent with `message` (in the send's transaction)."""
    if attachments:
        Attachment.objects.filter(pk__in=[a.pk for a in attachments]).update(message=message)
        for attachment in attachments:
            attachment.message = message


def file_parts(attachments: Iterable[Attachment]) -> list[FilePart]:
    """The attachments' bytes for a provider, read from storage."""
    parts = []
    for attachment in attachments:
        with open_attachment(attachment) as f:
            data = f.read()
        parts.append(FilePart(name=attachment.name, content_type=attachment.content_type,
                              data=data))
    return parts


def message_attachments(message_id: Any) -> list[Attachment]:
    return list(Attachment.objects.filter(message_id=message_id).order_by("created_at"))


@receiver(post_delete, sender=Attachment, dispatch_uid="attachment_file_cleanup")
def _delete_file(sender: Any, instance: Attachment, **kwargs: Any) -> None:
    # Once the deletion commits (a rolled-back delete keeps its file); a conversation's or
    # user's deletion cascades here row by row.
    name = instance.file.name
    if name:
        transaction.on_commit(partial(_delete_stored, name))


def _delete_stored(name: str) -> None:
    try:
        default_storage.delete(name)
    except OSError:
        logger.warning("could not delete attachment file %s", name, exc_info=True)
