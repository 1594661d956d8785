"""Branches: a conversation is a tree of messages, shown and sent along one active path.

Every message follows its `parent`; regenerating a reply adds an assistant sibling, editing a
message adds a user sibling (then a reply to it). `Conversation.active_leaf_id` names the end of
the path the UI shows and the vendor is sent as history; picking a sibling moves it to that
sibling's newest descendant.

A message stored without a parent (rows written before branches, or by code that does not set
one) follows the message before it by position, so a conversation written as a line stays one.
The one exception is an edit of a conversation's first message: it is a second root, marked by
`extra["edited_from"]`.

Vendors that keep their own history cannot be rewound (Capabilities.branches_in_place): for
them regenerate and edit fork the conversation instead (`fork`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from django.db import transaction
from django.dispatch import Signal
from django.utils.translation import gettext as _

from conversations.models import Conversation, Message
from conversations.services.errors import InvalidInput

# (pk, parent_id, seq, edited_from) — what the tree needs, nothing more.
Node = tuple[Any, Any, int, Any]

NODE_FIELDS = ("pk", "parent_id", "seq", "extra__edited_from")

# Sent on commit when a conversation's active path changes (`select_branch`), with
# `conversation_id`: the relay has every open socket resync; services never import the relay.
branch_selected = Signal()


@dataclass
class Tree:
    """The parent links of one conversation, with the fallback for parentless rows applied."""

    parent: dict[Any, Any] = field(default_factory=dict)
    seq: dict[Any, int] = field(default_factory=dict)
    children: dict[Any, list[Any]] = field(default_factory=dict)

    @classmethod
    def build(cls, nodes: Iterable[Node]) -> Tree:
        tree = cls()
        previous = None
        for pk, parent_id, seq, edited_from in sorted(nodes, key=lambda n: n[2]):
            if parent_id is None and not edited_from:
                parent_id = previous
            tree.parent[pk] = parent_id
            tree.seq[pk] = seq
            tree.children.setdefault(parent_id, []).append(pk)
            previous = pk
        return tree

    def newest_leaf(self, start: Any) -> Any:
        """The end of the newest branch below `start` (itself when it has no children)."""
        node = start
        while self.children.get(node):
            node = self.children[node][-1]  # children are in position order
        return node

    def path(self, leaf: Any) -> list[Any]:
        """The ids from the root to `leaf`; an unknown leaf means the newest message."""
        if leaf not in self.parent:
            if not self.seq:
                return []
            leaf = max(self.seq, key=self.seq.__getitem__)
        ids = []
        node = leaf
        while node is not None and len(ids) <= len(self.parent):  # a cycle cannot loop forever
            ids.append(node)
            node = self.parent.get(node)
        return ids[::-1]

    def siblings(self, pk: Any) -> list[Any]:
        return self.children.get(self.parent.get(pk), [pk])

    def branch_points(self, path: list[Any]) -> dict[str, list[str]]:
        """For each message of `path` that has alternatives: all of them, oldest first (the
        "‹ 2 / 3 ›" of the UI)."""
        out = {}
        for pk in path:
            options = self.siblings(pk)
            if len(options) > 1:
                out[str(pk)] = [str(o) for o in options]
        return out


def load_tree(conversation_id: UUID | str) -> Tree:
    return Tree.build(Message.objects.filter(conversation_id=conversation_id)
                      .values_list(*NODE_FIELDS))


@dataclass
class ActivePath:
    ids: list[Any]
    branches: dict[str, list[str]]

    def json(self) -> dict[str, Any]:
        return {"active_path": [str(i) for i in self.ids], "branches": self.branches}


def active_path(conversation: Conversation, leaf: Any = None) -> ActivePath:
    """The conversation's active path (or the one through message `leaf`, for a reviewer
    looking at another branch without changing the user's)."""
    tree = load_tree(conversation.pk)
    if leaf is not None:
        leaf = _uuid(leaf)
        leaf = tree.newest_leaf(leaf) if leaf in tree.parent else None
    ids = tree.path(leaf if leaf is not None else conversation.active_leaf_id)
    return ActivePath(ids, tree.branch_points(ids))


def select_branch(conversation: Conversation, message_id: Any) -> ActivePath:
    """Make the branch through `message_id` (its newest descendant) the active path."""
    pk = _uuid(message_id)
    with transaction.atomic():
        locked = Conversation.objects.select_for_update().get(pk=conversation.pk)
        tree = load_tree(locked.pk)
        if pk not in tree.parent:
            raise InvalidInput("invalid", _("That message is not in this conversation."),
                               field="message_id")
        leaf = tree.newest_leaf(pk)
        locked.active_leaf_id = leaf
        locked.save(update_fields=["active_leaf_id"])
        transaction.on_commit(lambda: branch_selected.send(
            sender=Conversation, conversation_id=str(locked.pk)))
    conversation.active_leaf_id = leaf
    ids = tree.path(leaf)
    return ActivePath(ids, tree.branch_points(ids))


def _uuid(value: Any) -> UUID:
    if isinstance(value, UUID):
        return value
    if not isinstance(value, str):
        raise InvalidInput("invalid", _("message_id must be a message's id."),
                           field="message_id")
    try:
        return UUID(value)
    except ValueError:
        raise InvalidInput("invalid", _("message_id must be a message's id."),
                           field="message_id") from None


def message_in(conversation_id: Any, message_id: Any) -> Message:
    pk = _uuid(message_id)
    message = Message.objects.filter(conversation_id=conversation_id, pk=pk).first()
    if message is None:
        raise InvalidInput("invalid", _("That message is not in this conversation."),
                               field="message_id")
    return message
