"""Agents, conversations, messages and tool calls.

One row per message; the assistant's reply is created in `streaming` state before the vendor is
called and updated in place (a bounded number of writes per run, see relay.py).
"""

from __future__ import annotations

import json
import os
import re
import uuid
from typing import Any

from django.conf import settings
from django.contrib.postgres.search import (
    SearchHeadline,
    SearchQuery,
    SearchRank,
    SearchVectorField,
)
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import connections, models
from django.db.models import Case, F, Func, Max, OuterRef, Q, Subquery, Value, When
from django.db.models.expressions import Col, Expression
from django.db.models.functions import (
    Cast,
    Greatest,
    Left,
    Length,
    Lower,
    Replace,
    StrIndex,
    Substr,
)
from django.utils import timezone, translation
from django.utils.translation import gettext_lazy as _

from conversations.token_env import token_env_problem

# 16 KB serialized is the cap for conversation metadata: enough for a customer record,
# small enough to send with every vendor call.
METADATA_MAX_BYTES = 16 * 1024

env_var_name = RegexValidator(
    r"^[A-Za-z_][A-Za-z0-9_]*$", _("Use an environment variable name such as OPENAI_API_KEY.")
)


def metadata_size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


def validate_metadata(value: Any) -> None:
    if not isinstance(value, dict):
        raise ValidationError(_("Metadata must be a JSON object."), code="invalid")
    if metadata_size(value) > METADATA_MAX_BYTES:
        raise ValidationError(
            _("Metadata must be at most %(size)s KB when serialized."),
            code="too_large",
            params={"size": METADATA_MAX_BYTES // 1024},
        )


class Team(models.Model):
    """A support team (docs/teams.md): its members share its conversations, its canned replies,
    its agents and its budget."""

    name = models.CharField(_("name"), max_length=120)
    slug = models.SlugField(_("slug"), max_length=64, unique=True)
    # Optional monthly budgets (services.costs.check_budget); empty: no limit.
    monthly_token_budget = models.PositiveBigIntegerField(
        _("monthly token budget"), null=True, blank=True,
        help_text=_("Input + output tokens per calendar month; empty for no limit."))
    monthly_cost_budget = models.DecimalField(
        _("monthly cost budget"), max_digits=12, decimal_places=2, null=True, blank=True,
        help_text=_("In the agents' price currency per calendar month; empty for no limit."))
    created_at = models.DateTimeField(_("created at"), default=timezone.now)

    class Meta:
        verbose_name = _("team")
        verbose_name_plural = _("teams")
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class TeamMembership(models.Model):
    class Role(models.TextChoices):
        LEAD = "lead", _("Lead")
        MEMBER = "member", _("Member")

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="memberships",
                             verbose_name=_("team"))
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                             related_name="team_memberships", verbose_name=_("user"))
    role = models.CharField(_("role"), max_length=8, choices=Role.choices, default=Role.MEMBER)
    # The team a user's new conversations belong to: the first one joined, changeable.
    is_default = models.BooleanField(_("default team"), default=False)
    joined_at = models.DateTimeField(_("joined at"), default=timezone.now)

    class Meta:
        verbose_name = _("team membership")
        verbose_name_plural = _("team memberships")
        ordering = ["team__name", "user_id"]
        constraints = [
            models.UniqueConstraint(fields=["team", "user"], name="one_membership_per_team"),
            models.UniqueConstraint(fields=["user"], condition=Q(is_default=True),
                                    name="one_default_team_per_user"),
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.team} ({self.role})"


class AgentQuerySet(models.QuerySet["Agent"]):
    def active(self) -> AgentQuerySet:
        return self.filter(is_active=True)

    def default(self) -> Agent | None:
        return self.active().filter(is_default=True).first() or self.active().order_by("pk").first()


class Agent(models.Model):
    slug = models.SlugField(_("slug"), max_length=64, unique=True)
    name = models.CharField(_("name"), max_length=120)
    provider = models.CharField(_("provider"), max_length=32)
    base_url = models.URLField(_("base URL"), max_length=500, blank=True)
    token_env = models.CharField(
        _("token environment variable"),
        max_length=128,
        blank=True,
        validators=[env_var_name],
        help_text=_(
            "Name of the environment variable that holds the secret token. "
            "The token itself is never stored."
        ),
    )
    options = models.JSONField(_("options"), default=dict, blank=True)
    is_active = models.BooleanField(_("active"), default=True)
    is_default = models.BooleanField(_("default"), default=False)
    # Empty: every team (and users in no team) may use the agent; else only these teams' members.
    teams = models.ManyToManyField(
        Team, blank=True, related_name="agents", verbose_name=_("teams"),
        help_text=_("Leave empty for every team."))
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    objects = AgentQuerySet.as_manager()

    class Meta:
        verbose_name = _("agent")
        verbose_name_plural = _("agents")
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["is_default"], condition=Q(is_default=True), name="one_default_agent"
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.slug})"

    def clean(self) -> None:
        from conversations.providers import provider_kinds

        if self.provider not in provider_kinds():
            raise ValidationError({"provider": ValidationError(
                _("Unknown provider “%(provider)s”."), code="invalid",
                params={"provider": self.provider},
            )})
        if not isinstance(self.options, dict):
            raise ValidationError({"options": _("Options must be a JSON object.")})
        problem = token_env_problem(self.token_env)
        if problem:
            raise ValidationError({"token_env": ValidationError(problem, code="not_allowed")})

    def token(self) -> str | None:
        """The secret from the environment; never stored, logged or rendered. None for a name
        the token rule refuses (a row saved before the rule), so e.g. SECRET_KEY is never read."""
        if not self.token_env or token_env_problem(self.token_env):
            return None
        return os.environ.get(self.token_env)


class Label(models.Model):
    """A reviewer's tag on a conversation ("refund", "hallucination"...), managed in the admin."""

    name = models.CharField(_("name"), max_length=64, unique=True)
    color = models.CharField(
        _("colour"), max_length=7, default="#6b7280",
        validators=[RegexValidator(r"^#[0-9a-fA-F]{6}$", _("Use a colour such as #1f6feb."))],
    )

    class Meta:
        verbose_name = _("label")
        verbose_name_plural = _("labels")
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class ConversationQuerySet(models.QuerySet["Conversation"]):
    def for_user(self, user: Any) -> ConversationQuerySet:
        """The one access rule (docs/teams.md): the conversations a user started, and those of
        every team they are a member of. Pages, API, websocket, files and exports all go
        through it (services.get_conversation)."""
        if not user.is_authenticated:
            return self.none()
        teams = TeamMembership.objects.filter(user=user).values("team_id")
        return self.filter(Q(owner=user) | Q(team_id__in=teams))

    def search(self, q: str, *, everywhere: bool = False) -> ConversationQuerySet:
        """The one conversation search: titles (the user's, the vendor's, the first message's),
        message text, the external user id and metadata values; with `everywhere` (the
        reviewers' admin and export API) also the conversation's id. `search_ranking` orders
        the same matches, best first, for the list and the API.

        On PostgreSQL, message text is full-text searched (`websearch_to_tsquery`, so no input
        is a syntax error) through the GIN-indexed `search_vector` column (migration 0009); the
        conversation's own fields both by words and as substrings (a partial customer id still
        finds it). On SQLite everything is a substring search.

        Subqueries, not joins: no duplicate rows, so no DISTINCT over a 10,000-row table.
        Metadata is searched as the text of its JSON. SQLite stores that text with json.dumps'
        \\uXXXX escapes for non-ASCII characters, so the escaped spelling of the query is tried
        too.
        """
        q = clean_search_text(q)
        if not q:
            return self
        qs, own = self._own_fields_match(q, everywhere=everywhere)
        if not _on_postgresql():
            matching = Message.objects.filter(content__icontains=q).values("conversation_id")
            return qs.filter(own | Q(pk__in=matching))
        matching = (Message.objects.alias(vector=StoredVector()).filter(vector=search_query(q))
                    .values("conversation_id"))
        return qs.filter(own | Q(pk__in=matching))

    def search_ranking(self, q: str) -> list[Any]:
        """The ids of this queryset's conversations that `search(q)` finds, best match first,
        then most recently updated. PostgreSQL: ten times the rank of the conversation's own
        words (a title or customer match comes first) plus its best message's rank. SQLite:
        title matches first.

        On PostgreSQL, two queries merged here: one GROUP BY over the matching messages (the
        GIN index finds them, ts_rank reads their stored vectors), one pass over the visible
        conversations' ids and dates. A rank subquery per conversation took 190 ms of a 450 ms
        search over 100,000 messages (`make bench`, scenario F)."""
        q = clean_search_text(q)
        if not q:
            return list(self.order_by("-updated_at", "-pk").values_list("pk", flat=True))
        qs, own = self._own_fields_match(q, everywhere=False)
        if not _on_postgresql():
            matching = Message.objects.filter(content__icontains=q).values("conversation_id")
            title = Q(title__icontains=q) | Q(auto_title__icontains=q) | Q(titles_text__icontains=q)
            return list(qs.filter(own | Q(pk__in=matching)).annotate(rank=Case(
                When(title, then=Value(1)), default=Value(0), output_field=models.IntegerField(),
            )).order_by("-rank", "-updated_at", "-pk").values_list("pk", flat=True))
        query = search_query(q)
        best = dict(Message.objects.filter(conversation__in=self.values("pk"))
                    .alias(vector=StoredVector()).filter(vector=query)
                    .values("conversation_id")
                    .annotate(rank=Max(SearchRank(StoredVector(), query))).order_by()
                    .values_list("conversation_id", "rank"))
        rows = qs.annotate(own_rank=Case(
            When(own, then=SearchRank(ConversationVector(), query)),
            default=None, output_field=models.FloatField(),
        )).values_list("pk", "updated_at", "own_rank")
        scores = []
        for pk, updated_at, own_rank in rows:
            message_rank = best.get(pk)
            if own_rank is not None or message_rank is not None:
                scores.append((10 * (own_rank or 0.0) + (message_rank or 0.0), updated_at, pk))
        return [pk for _, _, pk in sorted(scores, reverse=True)]

    def _own_fields_match(self, q: str, *, everywhere: bool) -> tuple[ConversationQuerySet, Q]:
        """The conversation's own fields as substrings (and, with `everywhere`, its id)."""
        condition = (
            Q(title__icontains=q)
            | Q(auto_title__icontains=q)
            | Q(titles_text__icontains=q)
            | Q(external_user_id__icontains=q)
            | Q(metadata_text__icontains=q)
        )
        if everywhere:
            try:
                # A pasted conversation id finds its conversation.
                condition |= Q(pk=uuid.UUID(q))
            except ValueError:
                pass
        escaped = json.dumps(q)[1:-1]
        if escaped != q:
            condition |= Q(metadata_text__icontains=escaped) | Q(titles_text__icontains=escaped)
        if _on_postgresql():
            # The same fields by words, through migration 0009's index.
            condition |= Q(pk__in=Conversation.objects.alias(vector=ConversationVector())
                           .filter(vector=search_query(q)).values("pk"))
        qs = self.alias(
            metadata_text=Cast("metadata", models.TextField()),
            titles_text=Cast("generated_titles", models.TextField()),
        )
        return qs, condition


# Search (ConversationQuerySet.search) ------------------------------------------------------------

# Search text is cut here: a query string is at most 200 characters on pages and in the API;
# 1,000 leaves room for the admin while keeping any tsquery small.
SEARCH_MAX_CHARS = 1000
# Snippets mark matches with these two private-use characters (removed from the text first), so
# a template can split on them and escape every part: vendor text is never marked safe.
MARK_START, MARK_END = "\ue000", "\ue001"
# ts_headline reads the whole text it is given: the first 20,000 characters of a message keep a
# snippet of a 1,000,000-character reply to a few milliseconds.
SNIPPET_SOURCE_CHARS = 20_000
# SQLite snippets: this much text either side of the first match.
SNIPPET_CONTEXT_CHARS = 60
_UNSEARCHABLE = re.compile("[\x00\ud800-\udfff\ue000\ue001]")


def clean_search_text(q: Any) -> str:
    """Search input as PostgreSQL and SQLite take it: no NUL or lone surrogate (PostgreSQL
    refuses them), no snippet marker, at most SEARCH_MAX_CHARS."""
    if not isinstance(q, str):
        return ""
    return _UNSEARCHABLE.sub("", q)[:SEARCH_MAX_CHARS].strip()


def _on_postgresql() -> bool:
    return connections[Conversation.objects.db].vendor == "postgresql"


def search_query(q: str) -> SearchQuery:
    """websearch_to_tsquery: quotes, OR and -word work, and nothing typed is a syntax error.
    'simple': no stemming and no stop words, the same for every language a team writes in."""
    return SearchQuery(q, config="simple", search_type="websearch")


class ConversationVector(Func):
    """A conversation's own words: its titles, customer id and metadata. Exactly the expression
    of migration 0009's GIN index (conv_search_vector), so PostgreSQL uses it: no COALESCE
    (the columns are NOT NULL), unlike Django's SearchVector."""

    template = "to_tsvector('simple'::regconfig, %(expressions)s)"
    arg_joiner = " || ' ' || "
    output_field = SearchVectorField()

    def __init__(self) -> None:
        super().__init__(
            F("title"), F("auto_title"), F("external_user_id"),
            Cast("generated_titles", models.TextField()), Cast("metadata", models.TextField()))


_STORED_VECTOR = SearchVectorField()
_STORED_VECTOR.set_attributes_from_name("search_vector")


class StoredVector(Expression):
    """`conversations_message.search_vector`, the PostgreSQL-only column of migration 0009 (not
    a model field: SQLite has no such column). Resolves to a column of the query's own table
    alias, so it also works inside subqueries."""

    output_field = SearchVectorField()

    def resolve_expression(self, query: Any = None, *args: Any, **kwargs: Any) -> Col:
        return Col(query.get_initial_alias(), _STORED_VECTOR, _STORED_VECTOR)


Snippet = list[tuple[str, bool]]


def search_snippets(conversations: list[Conversation], q: str) -> dict[Any, Snippet]:
    """For each conversation whose messages match `q`: a short excerpt of its best (PostgreSQL:
    highest-ranked; SQLite: first) matching message, as (text, is_match) parts. Two queries
    whatever the number of conversations."""
    q = clean_search_text(q)
    ids = [c.pk for c in conversations]
    if not q or not ids:
        return {}
    if _on_postgresql():
        return _headline_snippets(ids, q)
    return _substring_snippets(ids, q)


def _headline_snippets(ids: list[Any], q: str) -> dict[Any, Snippet]:
    query = search_query(q)
    best = (Message.objects.filter(conversation_id__in=ids)
            .alias(vector=StoredVector()).filter(vector=query)
            .annotate(rank=SearchRank(StoredVector(), query))
            .order_by("conversation_id", "-rank", "seq").distinct("conversation_id")
            .values_list("pk", flat=True))
    text = Left("content", SNIPPET_SOURCE_CHARS)
    for marker in (MARK_START, MARK_END):
        text = Replace(text, Value(marker), Value(""))
    rows = Message.objects.filter(pk__in=list(best)).annotate(headline=SearchHeadline(
        text, query, config="simple", start_sel=MARK_START, stop_sel=MARK_END,
        max_words=30, min_words=12)).values_list("conversation_id", "headline")
    return {conversation_id: _marked_parts(headline) for conversation_id, headline in rows}


def _marked_parts(text: str) -> Snippet:
    parts: Snippet = []
    for i, chunk in enumerate(re.split(f"[{MARK_START}{MARK_END}]", text)):
        if chunk:
            parts.append((chunk, i % 2 == 1))
    return parts


def _substring_snippets(ids: list[Any], q: str) -> dict[Any, Snippet]:
    first = (Message.objects.filter(conversation=OuterRef("pk"), content__icontains=q)
             .order_by("seq").values("pk")[:1])
    firsts = (Conversation.objects.filter(pk__in=ids).annotate(first=Subquery(first))
              .exclude(first=None).values_list("first", flat=True))
    # Only the text around the match leaves the database, however long the message.
    position = StrIndex(Lower("content"), Lower(Value(q)))
    begin = Greatest(position - SNIPPET_CONTEXT_CHARS, Value(1))
    rows = (Message.objects.filter(pk__in=list(firsts))
            .annotate(position=position, begin=begin,
                      excerpt=Substr("content", begin, 2 * SNIPPET_CONTEXT_CHARS + len(q)),
                      length=Length("content"))
            .values_list("conversation_id", "position", "begin", "excerpt", "length"))
    snippets: dict[Any, Snippet] = {}
    for conversation_id, position, begin, excerpt, length in rows:
        at = position - begin if position else -1
        before, match = (excerpt[:at], excerpt[at:at + len(q)]) if at >= 0 else (excerpt, "")
        after = excerpt[at + len(q):] if at >= 0 else ""
        if begin > 1:
            before = "…" + before.lstrip()
        if begin - 1 + len(excerpt) < length:
            after = after.rstrip() + "…"
        parts = [(before, False), (match, True), (after, False)]
        snippets[conversation_id] = [(text, hit) for text, hit in parts if text]
    return snippets


class Conversation(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="conversations",
        verbose_name=_("owner"),
    )
    # PROTECT: transcripts outlive agents; retire an agent with its active flag.
    agent = models.ForeignKey(
        Agent, on_delete=models.PROTECT, related_name="conversations", verbose_name=_("agent")
    )
    title = models.CharField(_("title"), max_length=200, blank=True)
    generated_titles = models.JSONField(_("generated titles"), default=dict, blank=True)
    # Taken from the first message when the conversation had no title (services.runs); shown
    # only while there is neither a user title nor a vendor title, so it never shadows one.
    auto_title = models.CharField(_("title from the first message"), max_length=200, blank=True)
    external_user_id = models.CharField(
        _("external user id"), max_length=255, blank=True, db_index=True
    )
    metadata = models.JSONField(
        _("metadata"), default=dict, blank=True, validators=[validate_metadata]
    )
    vendor_conversation_id = models.CharField(
        _("vendor conversation id"), max_length=255, blank=True
    )
    archived = models.BooleanField(_("archived"), default=False)
    # The team whose members share it (docs/teams.md); NULL: private to its owner.
    team = models.ForeignKey(
        Team, null=True, blank=True, on_delete=models.SET_NULL, related_name="conversations",
        verbose_name=_("team"))
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
        related_name="assigned_conversations", verbose_name=_("assignee"))
    # The leaf of the active path (services.branches): the branch the UI shows and the vendor is
    # sent as history. A plain id, not a foreign key: no cycle between the two tables, and a
    # leaf that is gone (never, in practice) falls back to the newest message.
    active_leaf_id = models.UUIDField(_("active branch leaf"), null=True, blank=True)
    # A fork (regenerate or edit on a vendor that keeps its own history) links back here.
    forked_from = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="forks",
        verbose_name=_("forked from"),
    )
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    updated_at = models.DateTimeField(_("updated at"), default=timezone.now)

    class ReviewStatus(models.TextChoices):
        UNREVIEWED = "unreviewed", _("Unreviewed")
        REVIEWED = "reviewed", _("Reviewed")
        FLAGGED = "flagged", _("Flagged")

    review_status = models.CharField(
        _("review status"), max_length=16, choices=ReviewStatus.choices,
        default=ReviewStatus.UNREVIEWED,
    )
    labels = models.ManyToManyField(
        Label, blank=True, related_name="conversations", verbose_name=_("labels")
    )
    review_notes = models.TextField(_("review notes"), blank=True)
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
        related_name="+", verbose_name=_("reviewed by"),
    )
    reviewed_at = models.DateTimeField(_("reviewed at"), null=True, blank=True)

    objects = ConversationQuerySet.as_manager()

    class Meta:
        verbose_name = _("conversation")
        verbose_name_plural = _("conversations")
        ordering = ["-updated_at"]
        indexes = [
            models.Index(fields=["owner", "archived", "-updated_at"], name="conv_owner_list"),
            models.Index(fields=["-updated_at"], name="conv_recent"),
            models.Index(fields=["review_status", "-updated_at"], name="conv_review"),
            models.Index(fields=["team", "archived", "-updated_at"], name="conv_team_list"),
            models.Index(fields=["assignee", "archived", "-updated_at"], name="conv_assignee"),
        ]
        permissions = [
            ("export_conversation", "Can export conversations"),
            ("view_stats", "Can view agent statistics"),
        ]

    def __str__(self) -> str:
        return self.display_title()

    def generated_title(self, language: str | None = None) -> str:
        """The vendor's title in `language` (default: the active language), else any."""
        return pick_title(self.generated_titles, language)

    def display_title(self, language: str | None = None) -> str:
        """What people see: the user's title, else the vendor's in `language` (default: the
        active language, so templates calling it without arguments follow the user), else the
        one taken from the first message."""
        return display_title(self.title, self.generated_titles, language,
                             auto_title=self.auto_title)


def pick_title(titles: dict[str, Any] | None, language: str | None = None) -> str:
    """From vendor titles keyed by locale ({"en-ca": ..., "fr-ca": ...}): the exact locale, else
    the same language ("fr" for "fr-ca"), else the first one."""
    if not titles:
        return ""
    lang = (language or translation.get_language() or settings.LANGUAGE_CODE).lower()
    for key in (lang, lang.split("-")[0]):
        for k, v in titles.items():
            if k.lower() == key or k.lower().split("-")[0] == key:
                return str(v)
    return str(next(iter(titles.values()), ""))


def display_title(title: str, titles: dict[str, Any] | None, language: str | None = None,
                  *, auto_title: str = "") -> str:
    """The user's title, else the vendor's, else the first message's, else "New conversation"
    in `language`."""
    if title:
        return title
    generated = pick_title(titles, language)
    if generated:
        return generated
    if auto_title:
        return auto_title
    if language is None:
        return str(_("New conversation"))
    with translation.override(language):
        return str(_("New conversation"))


class MessageQuerySet(models.QuerySet["Message"]):
    def streaming(self) -> MessageQuerySet:
        return self.filter(status=Message.Status.STREAMING)


class Message(models.Model):
    class Role(models.TextChoices):
        USER = "user", _("User")
        ASSISTANT = "assistant", _("Assistant")
        SYSTEM = "system", _("System")
        TOOL = "tool", _("Tool")
        # Never sent to a vendor (services.runs._turns keeps only user/assistant/system turns)
        # and never start a run: a colleague's internal note, and an assignment/handoff record.
        NOTE = "note", _("Internal note")
        EVENT = "event", _("Event")

    class Status(models.TextChoices):
        COMPLETED = "completed", _("Completed")
        STREAMING = "streaming", _("Streaming")
        FAILED = "failed", _("Failed")
        CANCELED = "canceled", _("Canceled")
        AWAITING_INPUT = "awaiting_input", _("Awaiting input")

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="messages",
        verbose_name=_("conversation"),
    )
    # Monotonic order inside a conversation; timestamps can tie.
    seq = models.PositiveIntegerField(_("position"), default=0)
    # The message this one follows: a conversation is a tree (regenerate and edit add siblings,
    # see services.branches). NULL for a conversation's first message.
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="children",
        verbose_name=_("follows"),
    )
    role = models.CharField(_("role"), max_length=16, choices=Role.choices)
    # Who wrote a user message, note or event: in a team's conversation that is not always
    # its owner. NULL for replies, and for messages written before teams.
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
        related_name="+", verbose_name=_("author"))
    content = models.TextField(_("content"), blank=True)
    status = models.CharField(
        _("status"), max_length=16, choices=Status.choices, default=Status.COMPLETED
    )
    error_code = models.CharField(_("error code"), max_length=64, blank=True)
    error_message = models.TextField(_("error message"), blank=True)
    usage = models.JSONField(_("token usage"), null=True, blank=True)
    # NULL, not "": the unique (conversation, client_id) constraint must ignore messages
    # sent without a client id.
    client_id = models.CharField(  # noqa: DJ001
        _("client id"), max_length=64, null=True, blank=True
    )
    # Vendor extras kept for review: pending interrupt, reasoning, data blocks, unknown events.
    extra = models.JSONField(_("vendor extras"), default=dict, blank=True)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    completed_at = models.DateTimeField(_("completed at"), null=True, blank=True)
    ttft_ms = models.PositiveIntegerField(_("time to first token (ms)"), null=True, blank=True)
    # A reply's OpenTelemetry trace id (32 hex, chatsite/tracing.py), written with its end;
    # blank when tracing is off or the sampler dropped the trace.
    trace_id = models.CharField(_("trace id"), max_length=32, blank=True, default="")
    # Touched by the relay's flush timer; a streaming message whose heartbeat is stale belongs to
    # a dead process (see services.reap_orphaned_runs).
    heartbeat_at = models.DateTimeField(_("heartbeat at"), null=True, blank=True)
    # The run's fence: whoever takes a streaming reply away from the process running it (the
    # reaper, a cancel of an orphaned run) bumps it in the same UPDATE that ends the reply. The
    # owner's writes are conditional on the value it started with (services.OWNER_LEASE), so a
    # process that comes back from a stall finds itself fenced and writes nothing more.
    lease = models.PositiveIntegerField(_("run lease"), default=0)

    objects = MessageQuerySet.as_manager()

    class Meta:
        verbose_name = _("message")
        verbose_name_plural = _("messages")
        ordering = ["seq"]
        indexes = [
            models.Index(fields=["conversation", "seq"], name="msg_transcript"),
            models.Index(fields=["status"], name="msg_status"),
            # A team's usage this month (services.costs.check_budget, once per send).
            models.Index(fields=["conversation", "created_at"], name="msg_reply_created",
                         condition=Q(role="assistant")),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["conversation", "client_id"],
                condition=Q(client_id__isnull=False),
                name="one_message_per_client_id",
            )
        ]

    def __str__(self) -> str:
        return f"{self.role}: {self.content[:60]}"

    @property
    def error(self) -> dict[str, str] | None:
        if not self.error_code:
            return None
        return {"code": self.error_code, "message": self.error_message}


class ToolCall(models.Model):
    class Status(models.TextChoices):
        STARTED = "started", _("Started")
        COMPLETED = "completed", _("Completed")
        FAILED = "failed", _("Failed")

    message = models.ForeignKey(
        Message, on_delete=models.CASCADE, related_name="tool_calls", verbose_name=_("message")
    )
    index = models.PositiveIntegerField(_("index"), default=0)
    call_id = models.CharField(_("call id"), max_length=255)
    name = models.CharField(_("name"), max_length=255, blank=True)
    arguments = models.TextField(_("arguments"), blank=True)
    arguments_json = models.JSONField(_("arguments (JSON)"), null=True, blank=True)
    result = models.JSONField(_("result"), null=True, blank=True)
    status = models.CharField(
        _("status"), max_length=16, choices=Status.choices, default=Status.STARTED
    )
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    completed_at = models.DateTimeField(_("completed at"), null=True, blank=True)

    class Meta:
        verbose_name = _("tool call")
        verbose_name_plural = _("tool calls")
        ordering = ["message", "index"]
        constraints = [
            models.UniqueConstraint(fields=["message", "call_id"], name="one_tool_call_per_id")
        ]

    def __str__(self) -> str:
        return f"{self.name}({self.call_id})"


class Feedback(models.Model):
    """A thumbs up / down (and optional comment) on an assistant reply, by the conversation's
    owner; one per reply, changeable."""

    class Score(models.IntegerChoices):
        DOWN = -1, _("Thumbs down")
        UP = 1, _("Thumbs up")

    message = models.OneToOneField(
        Message, on_delete=models.CASCADE, related_name="feedback", verbose_name=_("message")
    )
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="feedback",
        verbose_name=_("author"),
    )
    score = models.SmallIntegerField(_("score"), choices=Score.choices)
    comment = models.TextField(_("comment"), blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("feedback")
        verbose_name_plural = _("feedback")

    def __str__(self) -> str:
        return f"{'+' if self.score > 0 else '-'}1 on {self.message_id}"


def attachment_path(instance: Attachment, filename: str) -> str:
    # The stored name is the attachment's id: the user's file name never reaches the file
    # system (it is kept in `name` and sent back in Content-Disposition).
    return f"attachments/{instance.conversation_id}/{instance.id}"


class Attachment(models.Model):
    """A file uploaded into a conversation (services.attachments), sent with one message."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="attachments",
        verbose_name=_("conversation"),
    )
    # Set when a message is sent with it; an attachment belongs to at most one message.
    message = models.ForeignKey(
        Message, null=True, blank=True, on_delete=models.SET_NULL, related_name="attachments",
        verbose_name=_("message"),
    )
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+",
        verbose_name=_("uploaded by"),
    )
    file = models.FileField(_("file"), upload_to=attachment_path, max_length=255)
    name = models.CharField(_("name"), max_length=255)
    size = models.PositiveBigIntegerField(_("size"))
    # Sniffed from the content, never taken from the upload's name or header.
    content_type = models.CharField(_("content type"), max_length=100)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)

    class Meta:
        verbose_name = _("attachment")
        verbose_name_plural = _("attachments")
        ordering = ["created_at"]

    def __str__(self) -> str:
        return self.name


class CannedReply(models.Model):
    """A vetted answer (services.canned): `body` may hold {{customer.…}} / {{user.…}}
    variables, filled by a small restricted renderer, never the template engine."""

    class Scope(models.TextChoices):
        PERSONAL = "personal", _("Personal")
        TEAM = "team", _("Team")
        EVERYONE = "everyone", _("Everyone")

    title = models.CharField(_("title"), max_length=120)
    shortcut = models.SlugField(_("shortcut"), max_length=40)
    body = models.TextField(_("body"))
    language = models.CharField(_("language"), max_length=16, blank=True)
    scope = models.CharField(_("scope"), max_length=10, choices=Scope.choices,
                             default=Scope.PERSONAL)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                              on_delete=models.CASCADE, related_name="canned_replies",
                              verbose_name=_("owner"))
    team = models.ForeignKey(Team, null=True, blank=True, on_delete=models.CASCADE,
                             related_name="canned_replies", verbose_name=_("team"))
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    updated_at = models.DateTimeField(_("updated at"), default=timezone.now)

    class Meta:
        verbose_name = _("canned reply")
        verbose_name_plural = _("canned replies")
        ordering = ["shortcut"]

    def __str__(self) -> str:
        return f"/{self.shortcut} {self.title}"

    def clean(self) -> None:
        if self.scope == self.Scope.TEAM and self.team_id is None:
            raise ValidationError({"team": _("A team reply needs its team.")})
        if self.scope == self.Scope.PERSONAL and self.owner_id is None:
            raise ValidationError({"owner": _("A personal reply needs its owner.")})


# The review workspace (docs/review.md): scores against rubrics, queues that fill themselves.


class ScoreConfig(models.Model):
    """What reviewers (or an automated evaluator) score, with the rubric they read."""

    class Kind(models.TextChoices):
        NUMERIC = "numeric", _("Numeric")
        CATEGORICAL = "categorical", _("Categorical")
        BOOLEAN = "boolean", _("Yes / no")

    name = models.CharField(_("name"), max_length=80, unique=True)
    description = models.TextField(_("rubric"), blank=True)
    kind = models.CharField(_("kind"), max_length=12, choices=Kind.choices)
    # numeric: the range; categorical: the named options, in order.
    min_value = models.FloatField(_("minimum"), null=True, blank=True)
    max_value = models.FloatField(_("maximum"), null=True, blank=True)
    options = models.JSONField(_("options"), default=list, blank=True)
    is_active = models.BooleanField(_("active"), default=True)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)

    class Meta:
        verbose_name = _("score config")
        verbose_name_plural = _("score configs")
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Score(models.Model):
    """One author's value for one config on an assistant reply (`message`) or on a whole
    conversation (`message` NULL). Changing it keeps the earlier values in `history`."""

    class Source(models.TextChoices):
        HUMAN = "human", _("Reviewer")
        API = "api", _("API")

    config = models.ForeignKey(ScoreConfig, on_delete=models.PROTECT, related_name="scores",
                               verbose_name=_("score config"))
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE,
                                     related_name="scores", verbose_name=_("conversation"))
    message = models.ForeignKey(Message, null=True, blank=True, on_delete=models.CASCADE,
                                related_name="scores", verbose_name=_("message"))
    value = models.JSONField(_("value"))
    comment = models.TextField(_("comment"), blank=True)
    author = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL,
                               related_name="scores", verbose_name=_("author"))
    source = models.CharField(_("source"), max_length=8, choices=Source.choices,
                              default=Source.HUMAN)
    # Earlier values, oldest first: [{"value", "comment", "at"}].
    history = models.JSONField(_("history"), default=list, blank=True)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    updated_at = models.DateTimeField(_("updated at"), default=timezone.now)

    class Meta:
        verbose_name = _("score")
        verbose_name_plural = _("scores")
        ordering = ["-updated_at"]
        constraints = [
            models.UniqueConstraint(fields=["config", "author", "message"],
                                    condition=Q(message__isnull=False),
                                    name="one_score_per_reply_config_author"),
            models.UniqueConstraint(fields=["config", "author", "conversation"],
                                    condition=Q(message__isnull=True),
                                    name="one_score_per_conversation_config_author"),
        ]
        indexes = [models.Index(fields=["config", "-updated_at"], name="score_config_recent")]

    def __str__(self) -> str:
        return f"{self.config}: {self.value}"


class ReviewQueue(models.Model):
    """Work for reviewers: the items to score and the rules that fill it (services.queues)."""

    name = models.CharField(_("name"), max_length=80, unique=True)
    description = models.TextField(_("description"), blank=True)
    configs = models.ManyToManyField(ScoreConfig, related_name="queues",
                                     verbose_name=_("score configs"))
    assignees = models.ManyToManyField(settings.AUTH_USER_MODEL, blank=True,
                                       related_name="review_queues", verbose_name=_("assignees"))
    # Every member of the reviewer group may claim, besides the assignees.
    reviewer_group = models.BooleanField(_("open to all reviewers"), default=False)
    # Rules that enqueue as things happen.
    on_thumbs_down = models.BooleanField(_("on a thumbs-down"), default=False)
    on_failure = models.BooleanField(_("on a failed reply"), default=False)
    # Error codes that count as a failure for on_failure; empty: any.
    failure_codes = models.JSONField(_("failure codes"), default=list, blank=True)
    on_tool_error = models.BooleanField(_("on a tool call that failed"), default=False)
    on_flagged = models.BooleanField(_("on a flagged conversation"), default=False)
    sample_percent = models.FloatField(_("sample of completed replies (%)"), default=0)
    # Share of items that a second reviewer scores too, blind to the first.
    double_review_percent = models.FloatField(_("double review (%)"), default=0)
    is_active = models.BooleanField(_("active"), default=True)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)

    class Meta:
        verbose_name = _("review queue")
        verbose_name_plural = _("review queues")
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class QueueItem(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", _("Pending")
        IN_PROGRESS = "in_progress", _("In progress")
        DONE = "done", _("Done")
        SKIPPED = "skipped", _("Skipped")

    queue = models.ForeignKey(ReviewQueue, on_delete=models.CASCADE, related_name="items",
                              verbose_name=_("queue"))
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE,
                                     related_name="queue_items", verbose_name=_("conversation"))
    # The reply to score; NULL: the conversation as a whole.
    message = models.ForeignKey(Message, null=True, blank=True, on_delete=models.CASCADE,
                                related_name="queue_items", verbose_name=_("message"))
    # Why it is here: thumbs_down, failure, tool_error, flagged, sample, manual.
    reason = models.CharField(_("reason"), max_length=16)
    # 1, or 2 for the second, blind review of a double-reviewed target (never the same person).
    review_round = models.PositiveSmallIntegerField(_("round"), default=1)
    status = models.CharField(_("status"), max_length=12, choices=Status.choices,
                              default=Status.PENDING)
    claimed_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                   on_delete=models.SET_NULL, related_name="+",
                                   verbose_name=_("claimed by"))
    claimed_at = models.DateTimeField(_("claimed at"), null=True, blank=True)
    completed_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                     on_delete=models.SET_NULL, related_name="+",
                                     verbose_name=_("completed by"))
    completed_at = models.DateTimeField(_("completed at"), null=True, blank=True)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)

    class Meta:
        verbose_name = _("queue item")
        verbose_name_plural = _("queue items")
        ordering = ["created_at", "pk"]
        constraints = [
            # A target is in a queue once per round, however many rules fire for it.
            models.UniqueConstraint(fields=["queue", "message", "review_round"],
                                    condition=Q(message__isnull=False),
                                    name="one_item_per_reply_round"),
            models.UniqueConstraint(fields=["queue", "conversation", "review_round"],
                                    condition=Q(message__isnull=True),
                                    name="one_item_per_conversation_round"),
        ]
        indexes = [models.Index(fields=["queue", "status", "created_at"], name="item_claim")]

    def __str__(self) -> str:
        return f"{self.queue} #{self.pk} ({self.status})"


class ApiTokenQuerySet(models.QuerySet["ApiToken"]):
    def active(self) -> ApiTokenQuerySet:
        """Neither revoked nor expired, now."""
        return self.filter(revoked_at__isnull=True).filter(
            Q(expires_at__isnull=True) | Q(expires_at__gt=timezone.now()))


class ApiToken(models.Model):
    """A personal API token (services/tokens.py): the user's permissions limited by `scopes`.
    Only the SHA-256 of the token is stored; the token itself is shown once, at creation."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                             related_name="api_tokens", verbose_name=_("user"))
    name = models.CharField(_("name"), max_length=100)
    # The token's first characters ("cst_" and 6 more): enough to recognise it in a list, far
    # too few (36 bits of 256) to help guess it.
    prefix = models.CharField(_("prefix"), max_length=16)
    token_hash = models.CharField(_("hash"), max_length=64, unique=True, editable=False)
    scopes = models.JSONField(_("scopes"), default=list)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    expires_at = models.DateTimeField(_("expires at"), null=True, blank=True)
    last_used_at = models.DateTimeField(_("last used at"), null=True, blank=True)
    revoked_at = models.DateTimeField(_("revoked at"), null=True, blank=True)

    objects = ApiTokenQuerySet.as_manager()

    class Meta:
        verbose_name = _("API token")
        verbose_name_plural = _("API tokens")
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None and (
            self.expires_at is None or self.expires_at > timezone.now())


# The audit trail (docs/audit.md) -------------------------------------------------------------


class AuditEventRefused(Exception):
    """An audit event is never changed, and deleted only by `manage.py prune_audit`."""


class AuditEventQuerySet(models.QuerySet["AuditEvent"]):
    def update(self, **kwargs: Any) -> int:
        # The one update allowed: deleting a user sets `actor` to NULL (on_delete=SET_NULL runs
        # QuerySet.update); `actor_name` keeps who it was.
        if kwargs != {"actor": None}:
            raise AuditEventRefused("audit events are append-only")
        return super().update(**kwargs)


class AuditEvent(models.Model):
    """A read or an export that matters, a login or a token change (services/audit.py).
    Changes to rows are auditlog's `LogEntry`; this is what no row change shows."""

    at = models.DateTimeField(_("at"), default=timezone.now, db_index=True)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                              on_delete=models.SET_NULL, related_name="+",
                              verbose_name=_("actor"))
    # Kept when the user is deleted; the attempted username for a failed login.
    actor_name = models.CharField(_("actor name"), max_length=150, blank=True)
    # A stable dotted name: transcript.viewed, export.downloaded, login.succeeded...
    action = models.CharField(_("action"), max_length=64, db_index=True)
    object_type = models.CharField(_("object type"), max_length=100, blank=True)
    object_id = models.CharField(_("object id"), max_length=64, blank=True)
    object_repr = models.CharField(_("object"), max_length=200, blank=True)
    details = models.JSONField(_("details"), default=dict, blank=True)
    ip = models.GenericIPAddressField(_("IP address"), null=True, blank=True)

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        verbose_name = _("audit event")
        verbose_name_plural = _("audit events")
        ordering = ["-at", "-pk"]
        indexes = [models.Index(fields=["object_type", "object_id"], name="audit_object")]

    def __str__(self) -> str:
        return f"{self.action} {self.actor_name or '-'} {self.object_repr}".strip()

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise AuditEventRefused("audit events are append-only")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        raise AuditEventRefused("audit events are deleted only by manage.py prune_audit")


# Outbound webhooks (docs/webhooks.md; services/webhooks.py sends them) -------------------------

# The events an endpoint may subscribe to; each one's payload is documented in docs/webhooks.md.
WEBHOOK_EVENTS = (
    "reply.completed",
    "reply.failed",
    "feedback.created",
    "conversation.assigned",
    "conversation.flagged",
    "score.created",
)


def validate_webhook_url(value: str) -> None:
    """http or https with a host, no whitespace: the receiver is a web server, never a file: or
    another scheme httpx would refuse only at the first delivery."""
    from urllib.parse import urlsplit

    try:
        parsed = urlsplit(value)
        host = parsed.hostname
    except ValueError:
        host = None
        parsed = None
    if (parsed is None or parsed.scheme not in ("http", "https") or not host
            or any(c.isspace() for c in value)):
        raise ValidationError(_("Enter an http:// or https:// URL with a host."), code="invalid")


def validate_webhook_events(value: Any) -> None:
    if (not isinstance(value, list) or not value
            or any(not isinstance(e, str) or e not in WEBHOOK_EVENTS for e in value)):
        raise ValidationError(
            _("Choose one or more of: %(events)s.") % {"events": ", ".join(WEBHOOK_EVENTS)},
            code="invalid")


class WebhookEndpoint(models.Model):
    """A receiver of signed event notifications. The signing secret is stored encrypted
    (services.webhooks.encrypt_secret, a key derived from SECRET_KEY), never in clear."""

    # 2,000 characters: the practical limit of URLs browsers and servers accept.
    url = models.CharField(_("URL"), max_length=2000, validators=[validate_webhook_url])
    secret_encrypted = models.TextField(_("secret (encrypted)"), editable=False)
    events = models.JSONField(_("events"), default=list, validators=[validate_webhook_events])
    active = models.BooleanField(_("active"), default=True)
    description = models.CharField(_("description"), max_length=200, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                   on_delete=models.SET_NULL, related_name="+",
                                   verbose_name=_("created by"))
    created_at = models.DateTimeField(_("created at"), default=timezone.now)

    class Meta:
        verbose_name = _("webhook endpoint")
        verbose_name_plural = _("webhook endpoints")
        ordering = ["pk"]

    def __str__(self) -> str:
        return self.description or self.url


class WebhookDelivery(models.Model):
    """One event for one endpoint. Its id is the idempotency key sent as X-Chatsite-Delivery,
    the same on every attempt; the payload is fixed when the event happens."""

    class Status(models.TextChoices):
        PENDING = "pending", _("Pending")
        SUCCEEDED = "succeeded", _("Succeeded")
        FAILED = "failed", _("Failed")

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE,
                                 related_name="deliveries", verbose_name=_("endpoint"))
    event = models.CharField(_("event"), max_length=40)
    payload = models.JSONField(_("payload"))
    status = models.CharField(_("status"), max_length=12, choices=Status.choices,
                              default=Status.PENDING)
    attempts = models.PositiveIntegerField(_("attempts"), default=0)
    next_attempt_at = models.DateTimeField(_("next attempt at"), null=True, blank=True)
    # Retries stop at this time (created_at + WEBHOOK_RETRY_HOURS; a redelivery moves it).
    retry_until = models.DateTimeField(_("retry until"))
    # Bumped by a redelivery: a task of an earlier run finds it changed and stops, so two runs
    # never chase one delivery.
    run = models.PositiveIntegerField(_("run"), default=1)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)

    class Meta:
        verbose_name = _("webhook delivery")
        verbose_name_plural = _("webhook deliveries")
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["status", "created_at"], name="webhook_delivery_status")]

    def __str__(self) -> str:
        return f"{self.event} {self.id}"


class WebhookAttempt(models.Model):
    """One HTTP request of a delivery and what came back (or why nothing did)."""

    delivery = models.ForeignKey(WebhookDelivery, on_delete=models.CASCADE,
                                 related_name="attempt_rows", verbose_name=_("delivery"))
    at = models.DateTimeField(_("at"), default=timezone.now)
    duration_ms = models.PositiveIntegerField(_("duration (ms)"), default=0)
    http_status = models.PositiveSmallIntegerField(_("HTTP status"), null=True, blank=True)
    error = models.CharField(_("error"), max_length=500, blank=True)
    response_excerpt = models.TextField(_("response excerpt"), blank=True)

    class Meta:
        verbose_name = _("webhook attempt")
        verbose_name_plural = _("webhook attempts")
        ordering = ["at", "pk"]

    def __str__(self) -> str:
        return f"{self.delivery_id} @ {self.at:%Y-%m-%d %H:%M:%S}"


class ExternalIdentity(models.Model):
    """A person as an OpenID provider knows them (docs/sso.md): the `sub` claim, stable and
    unique per issuer, links a provider account to one user. E-mail addresses change and are
    reused, so they never decide who logs in."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                             related_name="external_identities", verbose_name=_("user"))
    # OpenID Connect puts no bound on either; 255 holds every provider's URLs and ids
    # (Entra ID's object ids are 36 characters, Google's subjects 21 digits).
    issuer = models.CharField(_("issuer"), max_length=255)
    subject = models.CharField(_("subject"), max_length=255)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    last_login_at = models.DateTimeField(_("last login"), default=timezone.now)

    class Meta:
        verbose_name = _("external identity")
        verbose_name_plural = _("external identities")
        ordering = ["issuer", "subject"]
        constraints = [
            models.UniqueConstraint(fields=["issuer", "subject"], name="one_user_per_subject"),
        ]

    def __str__(self) -> str:
        return f"{self.subject} @ {self.issuer}"
