"""What replies cost, and what a team has used of its monthly budget (docs/teams.md).

An agent's prices are two options, `price_input_per_mtok` and `price_output_per_mtok` (in the
site's one price currency per million tokens). A reply's cost is
`prompt_tokens × input price / 10⁶ + completion_tokens × output price / 10⁶`, from the usage the
relay stored (`Message.usage`, providers/usage.py's `Usage.as_dict`). Costs are computed when
they are read, with the agent's current prices: changing a price re-prices past replies too.

A team's consumption is its conversations' replies created this calendar month (UTC): one
aggregate query, grouped by agent. `check_budget` raises `quota_exceeded` once either budget is
reached; the send paths call it before a run starts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from django.db.models import BigIntegerField, Case, Count, Q, Sum, Value, When
from django.db.models.fields.json import KT
from django.db.models.functions import Cast, Coalesce
from django.utils import formats, timezone
from django.utils.translation import gettext as _

from conversations.models import Message, Team
from conversations.services.errors import InvalidInput

PRICE_OPTIONS = ("price_input_per_mtok", "price_output_per_mtok")
# 1,000,000 per million tokens (one unit per token) is far above any vendor's list price; a
# larger number is a typo (or a hostile value) that would overflow the cost budget's 12 digits.
PRICE_MAX = 1_000_000
MTOK = Decimal(1_000_000)
# Costs are shown and compared to six decimals: a 10-token reply at 0.10 per million tokens
# costs 0.000001.
COST_PLACES = Decimal("0.000001")


@dataclass(frozen=True)
class Prices:
    input: Decimal
    output: Decimal


def price_problems(options: dict[str, Any]) -> list[str]:
    """What is wrong with an agent's price options (every provider kind; empty when fine)."""
    problems = []
    for name in PRICE_OPTIONS:
        if name not in options:
            continue
        value = options[name]
        if (isinstance(value, bool) or not isinstance(value, int | float)
                or not math.isfinite(value) or not 0 <= value <= PRICE_MAX):
            problems.append(
                _("option %(name)r must be a number from 0 to %(max)s (a price per million "
                  "tokens)") % {"name": name, "max": f"{PRICE_MAX:,}"})
    return problems


def agent_prices(options: Any) -> Prices | None:
    """An agent's prices from its options, None when it has neither. A missing half is 0; a
    malformed one (a row saved before the check) counts as no price rather than failing."""
    if not isinstance(options, dict) or not any(name in options for name in PRICE_OPTIONS):
        return None
    if price_problems(options):
        return None
    values = [Decimal(str(options.get(name, 0))) for name in PRICE_OPTIONS]
    return Prices(*values)


def _count(usage: dict[str, Any], key: str) -> int | None:
    value = usage.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def reply_tokens(usage: Any) -> int:
    """A reply's tokens as /stats/ counts them: the vendor's total, else input + output."""
    if not isinstance(usage, dict):
        return 0
    total = _count(usage, "total_tokens")
    if total is not None:
        return total
    return (_count(usage, "prompt_tokens") or 0) + (_count(usage, "completion_tokens") or 0)


def reply_cost(usage: Any, prices: Prices | None) -> Decimal | None:
    """The cost of one reply, None when its agent has no prices or the vendor reported neither
    input nor output tokens (a total alone cannot be split between the two prices)."""
    if prices is None or not isinstance(usage, dict):
        return None
    prompt, completion = _count(usage, "prompt_tokens"), _count(usage, "completion_tokens")
    if prompt is None and completion is None:
        return None
    cost = ((prompt or 0) * prices.input + (completion or 0) * prices.output) / MTOK
    return cost.quantize(COST_PLACES)


def message_cost(message: Message) -> Decimal | None:
    """A reply's cost when its conversation and agent are loaded (the transcript loaders get
    messages through `conversation.messages`, which caches the conversation); never a query."""
    if message.usage is None or message.role != Message.Role.ASSISTANT:
        return None
    conversation = message._state.fields_cache.get("conversation")
    agent = conversation._state.fields_cache.get("agent") if conversation is not None else None
    if agent is None:
        return None
    return reply_cost(message.usage, agent_prices(agent.options))


def format_cost(cost: Decimal | None) -> str:
    """A cost for people: localized, two decimals at least and six at most (0.0081, 2.50);
    "–" for none."""
    if cost is None:
        return "–"
    places = min(max(2, -int(cost.normalize().as_tuple().exponent)), 6)
    return formats.number_format(cost, places, use_l10n=True, force_grouping=True)


def cost_number(cost: Decimal | None) -> float | None:
    """A cost for JSON (a number, six decimals at most)."""
    return None if cost is None else float(cost)


# Team budgets -----------------------------------------------------------------------------------


def month_bounds(now: datetime | None = None) -> tuple[datetime, datetime]:
    """The current calendar month in UTC: its first instant and the next month's."""
    now = (now or timezone.now()).astimezone(UTC)
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    following = (start.replace(year=start.year + 1, month=1) if start.month == 12
                 else start.replace(month=start.month + 1))
    return start, following


@dataclass
class AgentUse:
    agent_id: int
    name: str
    slug: str
    replies: int
    tokens: int
    cost: Decimal | None

    @property
    def cost_display(self) -> str:
        return format_cost(self.cost)


@dataclass
class Consumption:
    start: datetime
    resets_at: datetime
    tokens: int = 0
    cost: Decimal = Decimal(0)
    by_agent: list[AgentUse] = field(default_factory=list)

    @property
    def cost_display(self) -> str:
        return format_cost(self.cost)


def _usage_int(key: str) -> Case:
    """A count of `Message.usage` in SQL; NULL when missing or JSON null (which SQLite reads as
    the text 'null', and would cast to 0)."""
    lookup = f"usage__{key}"
    return Case(
        When(Q(**{lookup: None}) | Q(**{f"{lookup}__isnull": True}),
             then=Value(None, output_field=BigIntegerField())),
        default=Cast(KT(lookup), BigIntegerField()))


def team_consumption(team: Team, now: datetime | None = None) -> Consumption:
    """Tokens and cost of `team`'s replies this month (UTC), in total and per agent.

    One aggregate query: messages join their conversation (filtered by team, indexed by
    `conv_team_list`) and their agent (for the prices), grouped by agent.
    """
    start, resets_at = month_bounds(now)
    prompt, completion = _usage_int("prompt_tokens"), _usage_int("completion_tokens")
    tokens = Coalesce(_usage_int("total_tokens"),
                      Coalesce(prompt, Value(0)) + Coalesce(completion, Value(0)))
    rows = (
        Message.objects.filter(role=Message.Role.ASSISTANT, conversation__team=team,
                               created_at__gte=start, created_at__lt=resets_at)
        .values("conversation__agent_id", "conversation__agent__name",
                "conversation__agent__slug", "conversation__agent__options")
        .annotate(replies=Count("pk"), tokens=Sum(tokens), prompt=Sum(prompt),
                  completion=Sum(completion))
        .order_by("conversation__agent__name", "conversation__agent_id")
    )
    used = Consumption(start, resets_at)
    for row in rows:
        prices = agent_prices(row["conversation__agent__options"])
        cost = None
        # Like reply_cost: no price, or no input nor output count in any reply (both sums
        # NULL), is no cost.
        if prices is not None and (row["prompt"] is not None or row["completion"] is not None):
            cost = ((row["prompt"] or 0) * prices.input
                    + (row["completion"] or 0) * prices.output) / MTOK
            cost = cost.quantize(COST_PLACES)
        used.by_agent.append(AgentUse(
            row["conversation__agent_id"], row["conversation__agent__name"],
            row["conversation__agent__slug"], row["replies"] or 0, row["tokens"] or 0, cost))
        used.tokens += row["tokens"] or 0
        used.cost += cost or 0
    return used


def budget_reached(team: Team, used: Consumption) -> str | None:
    """Which budget `used` has reached ("tokens" or "cost"), None when neither."""
    if team.monthly_token_budget is not None and used.tokens >= team.monthly_token_budget:
        return "tokens"
    if team.monthly_cost_budget is not None and used.cost >= team.monthly_cost_budget:
        return "cost"
    return None


def check_budget(team: Team | None, now: datetime | None = None) -> None:
    """Refuse a new run (send, regenerate, edit, interrupt answer) once `team` has used its
    monthly token or cost budget: `InvalidInput("quota_exceeded")`, HTTP 429 on an API. A
    conversation outside a team, or a team without budgets, costs no query."""
    if team is None or (team.monthly_token_budget is None and team.monthly_cost_budget is None):
        return
    used = team_consumption(team, now)
    reached = budget_reached(team, used)
    if reached is None:
        return
    resets = formats.date_format(used.resets_at, "DATE_FORMAT")
    if reached == "tokens":
        message = _("The team “%(team)s” has used its monthly budget of %(budget)s tokens; "
                    "new messages are refused until it resets on %(date)s (UTC).") % {
            "team": team.name, "budget": formats.number_format(
                team.monthly_token_budget, force_grouping=True), "date": resets}
    else:
        message = _("The team “%(team)s” has used its monthly cost budget of %(budget)s; "
                    "new messages are refused until it resets on %(date)s (UTC).") % {
            "team": team.name, "budget": formats.number_format(
                team.monthly_cost_budget, 2, force_grouping=True), "date": resets}
    raise InvalidInput("quota_exceeded", message, status=429)

