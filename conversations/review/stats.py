"""Reviewer statistics: per day and per agent, over a date range, plus server-rendered SVG charts.

Three queries whatever the range: every agent (names and prices), conversations per (day, agent,
team) aggregated by the database, and the finished assistant replies of the range (a few columns
each, read with an iterator). Percentiles are computed in Python over those replies, which is
fine for the tens of thousands of replies a month brings at this scale.

Definitions (also shown under the page's tables):
- a reply is an assistant message created in the range that is no longer streaming;
- failure rate = failed replies / replies, broken down by error code;
- time to first token is over the replies that have one; duration (completed_at - created_at)
  is over completed replies;
- percentiles use the nearest-rank method, so every figure is one a reply actually had;
- feedback counts the thumbs given to the range's replies; ratio = up / (up + down).
- cost is each reply's at its agent's current prices (services.costs), per agent and per team.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, tzinfo
from decimal import Decimal
from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import Count
from django.db.models.functions import Coalesce, TruncDate
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.text import Truncator
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from conversations.models import (
    Agent,
    Conversation,
    Message,
    QueueItem,
    ReviewQueue,
    Score,
    ScoreConfig,
)
from conversations.review.agreement import (
    NO_UNITS,
    NO_VARIATION,
    Agreement,
    cohen_kappa,
    krippendorff_alpha_interval,
)
from conversations.services.costs import agent_prices, format_cost, reply_cost, reply_tokens

# Okabe-Ito: eight colours told apart by people with the common colour-vision deficiencies.
PALETTE = [
    "#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00", "#f0e442", "#000000",
]
# Read with an iterator so a busy month is never a list of model instances in memory.
REPLY_CHUNK = 2000


def percentile(values: list[int], p: float) -> int | None:
    """Nearest-rank percentile (None without values): the smallest value with at least p% of the
    values at or below it."""
    if not values:
        return None
    ordered = sorted(values)
    rank = math.ceil(p / 100 * len(ordered))
    return ordered[max(rank, 1) - 1]


@dataclass
class Bucket:
    conversations: int = 0
    replies: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    ttft: list[int] = field(default_factory=list)
    durations: list[int] = field(default_factory=list)
    tokens: int = 0
    # At the agents' prices (services.costs); None while no reply of the bucket has a cost.
    cost: Decimal | None = None
    up: int = 0
    down: int = 0

    @property
    def cost_display(self) -> str:
        return format_cost(self.cost)

    @property
    def failed(self) -> int:
        return sum(self.failures.values())

    @property
    def failure_rate(self) -> float | None:
        return self.failed / self.replies if self.replies else None

    @property
    def failure_percent(self) -> float | None:
        rate = self.failure_rate
        return None if rate is None else rate * 100

    @property
    def failure_codes(self) -> list[tuple[str, int, float]]:
        """(code, count, percent of replies), most frequent first."""
        return [
            (code, count, count / self.replies * 100)
            for code, count in sorted(self.failures.items(), key=lambda kv: (-kv[1], kv[0]))
        ]

    @property
    def ttft_p50(self) -> int | None:
        return percentile(self.ttft, 50)

    @property
    def ttft_p95(self) -> int | None:
        return percentile(self.ttft, 95)

    @property
    def duration_p50(self) -> int | None:
        return percentile(self.durations, 50)

    @property
    def duration_p95(self) -> int | None:
        return percentile(self.durations, 95)

    @property
    def feedback_ratio(self) -> float | None:
        rated = self.up + self.down
        return self.up / rated if rated else None

    @property
    def feedback_percent(self) -> float | None:
        ratio = self.feedback_ratio
        return None if ratio is None else ratio * 100

    @property
    def is_empty(self) -> bool:
        return not (self.conversations or self.replies)


@dataclass(frozen=True)
class AgentInfo:
    id: int
    slug: str
    name: str
    color: str


@dataclass(frozen=True)
class TeamInfo:
    id: int | None  # None: conversations outside a team
    name: str


@dataclass
class Stats:
    start: date
    end: date
    days: list[date]
    agents: list[AgentInfo]
    by_day_agent: dict[tuple[date, int], Bucket]
    by_agent: dict[int, Bucket]
    by_day: dict[date, Bucket]
    total: Bucket
    by_team: dict[TeamInfo, Bucket] = field(default_factory=dict)

    def agent_rows(self) -> list[tuple[AgentInfo, Bucket]]:
        return [(a, self.by_agent[a.id]) for a in self.agents]

    def team_rows(self) -> list[tuple[TeamInfo, Bucket]]:
        """Teams by name, then the conversations outside a team."""
        return sorted(self.by_team.items(),
                      key=lambda item: (item[0].id is None, item[0].name.lower(), item[0].id or 0))

    def day_rows(self) -> list[tuple[date, AgentInfo, Bucket]]:
        """Active (day, agent) pairs, newest day first."""
        return [
            (day, agent, self.by_day_agent[(day, agent.id)])
            for day in reversed(self.days)
            for agent in self.agents
            if (day, agent.id) in self.by_day_agent
        ]


def _bounds(start: date, end: date, tz: tzinfo) -> tuple[datetime, datetime]:
    lo = timezone.make_aware(datetime.combine(start, time.min), tz)
    hi = timezone.make_aware(datetime.combine(end + timedelta(days=1), time.min), tz)
    return lo, hi


def _tokens(usage: Any) -> int:
    # The vendor's total, else the two halves some vendors report alone.
    return reply_tokens(usage)


def compute_stats(start: date, end: date) -> Stats:
    """Statistics of the days `start`..`end` (inclusive) in the current time zone."""
    tz = timezone.get_current_timezone()
    lo, hi = _bounds(start, end, tz)
    days = [start + timedelta(days=i) for i in range((end - start).days + 1)]
    by_day_agent: dict[tuple[date, int], Bucket] = {}
    by_agent: dict[int, Bucket] = {}
    by_day: dict[date, Bucket] = {}
    by_team: dict[TeamInfo, Bucket] = {}
    total = Bucket()
    # Every agent, for its prices now and its name at the end: a small table, one query.
    all_agents = {a.pk: a for a in Agent.objects.order_by("name", "pk")}
    prices = {pk: agent_prices(a.options) for pk, a in all_agents.items()}

    def buckets(day: date, agent_id: int, team: TeamInfo) -> tuple[Bucket, ...]:
        return (
            by_day_agent.setdefault((day, agent_id), Bucket()),
            by_agent.setdefault(agent_id, Bucket()),
            by_day.setdefault(day, Bucket()),
            by_team.setdefault(team, Bucket()),
            total,
        )

    no_team = TeamInfo(None, _("No team"))
    started = (
        Conversation.objects.filter(created_at__gte=lo, created_at__lt=hi)
        .annotate(day=TruncDate("created_at", tzinfo=tz))
        .values_list("day", "agent_id", "team_id", "team__name")
        .annotate(n=Count("pk"))
        .order_by()
    )
    for day, agent_id, team_id, team_name, n in started:
        team = TeamInfo(team_id, team_name) if team_id is not None else no_team
        for bucket in buckets(day, agent_id, team):
            bucket.conversations += n

    replies = (
        Message.objects.filter(
            role=Message.Role.ASSISTANT, created_at__gte=lo, created_at__lt=hi
        )
        .exclude(status=Message.Status.STREAMING)
        .values_list(
            "conversation__agent_id", "created_at", "completed_at", "ttft_ms", "status",
            "error_code", "usage", "feedback__score", "conversation__team_id",
            "conversation__team__name",
        )
        .order_by()
    )
    for (agent_id, created, completed, ttft, status, code, usage, score, team_id,
         team_name) in replies.iterator(chunk_size=REPLY_CHUNK):
        team = TeamInfo(team_id, team_name) if team_id is not None else no_team
        cost = reply_cost(usage, prices.get(agent_id))
        day = timezone.localtime(created, tz).date()
        duration = None
        if status == Message.Status.COMPLETED and completed is not None:
            duration = max(0, round((completed - created).total_seconds() * 1000))
        tokens = _tokens(usage)
        for bucket in buckets(day, agent_id, team):
            bucket.replies += 1
            if status == Message.Status.FAILED:
                bucket.failures[code or "unknown"] += 1
            if ttft is not None:
                bucket.ttft.append(ttft)
            if duration is not None:
                bucket.durations.append(duration)
            bucket.tokens += tokens
            if cost is not None:
                bucket.cost = (bucket.cost or 0) + cost
            if score == 1:
                bucket.up += 1
            elif score == -1:
                bucket.down += 1

    agents = [
        AgentInfo(a.pk, a.slug, a.name, PALETTE[i % len(PALETTE)])
        for i, a in enumerate(a for pk, a in all_agents.items() if pk in by_agent)
    ]
    return Stats(start, end, days, agents, by_day_agent, by_agent, by_day, total, by_team)


# Charts --------------------------------------------------------------------------------------
# Plain SVG built with format_html, so every label from the database is escaped. Each chart has
# a <title> (its accessible name) and a <title> per bar for the exact figure on hover; the same
# numbers are in the tables beside the charts.


def nice_ceiling(value: float) -> float:
    """The smallest 1, 2 or 5 × 10^k at or above `value` (an axis maximum people can read)."""
    if value <= 0:
        return 1
    exponent = math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        candidate = step * 10**exponent
        if candidate >= value:
            return candidate
    return 10 ** (exponent + 1)


def _f(value: float) -> str:
    """A coordinate: format_html escapes its arguments first, so they are formatted here."""
    return f"{value:.1f}"


def _number(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"


def _svg(width: int, height: int, title: str, body: SafeString) -> SafeString:
    return format_html(
        '<svg class="chart" viewBox="0 0 {} {}" width="100%" role="img" '
        'xmlns="http://www.w3.org/2000/svg"><title>{}</title>{}</svg>',
        width, height, title, body,
    )


def stacked_day_chart(stats: Stats) -> SafeString:
    """Replies per day, one stacked segment per agent."""
    width, height, left, bottom, top = 720, 240, 44, 28, 10
    plot_w, plot_h = width - left - 8, height - bottom - top
    peak = max((stats.by_day[d].replies for d in stats.days if d in stats.by_day), default=0)
    axis_max = nice_ceiling(peak)
    slot = plot_w / max(len(stats.days), 1)
    bar_w = max(slot * 0.75, 1)
    parts: list[SafeString] = []
    for tick in (0, axis_max / 2, axis_max):
        y = top + plot_h - tick / axis_max * plot_h
        parts.append(format_html(
            '<line class="grid" x1="{}" x2="{}" y1="{}" y2="{}"/>'
            '<text class="tick" x="{}" y="{}" text-anchor="end">{}</text>',
            left, width - 8, _f(y), _f(y), left - 4, _f(y + 4), _number(tick),
        ))
    # At most ~10 day labels so they never overlap.
    label_every = max(1, math.ceil(len(stats.days) / 10))
    for i, day in enumerate(stats.days):
        x = left + i * slot + (slot - bar_w) / 2
        y = top + plot_h
        for agent in stats.agents:
            bucket = stats.by_day_agent.get((day, agent.id))
            if not bucket or not bucket.replies:
                continue
            h = bucket.replies / axis_max * plot_h
            y -= h
            parts.append(format_html(
                '<rect x="{}" y="{}" width="{}" height="{}" fill="{}">'
                "<title>{}</title></rect>",
                _f(x), _f(y), _f(bar_w), _f(h), agent.color,
                ngettext("%(day)s · %(agent)s: %(n)s reply", "%(day)s · %(agent)s: %(n)s replies",
                         bucket.replies)
                % {"day": day.isoformat(), "agent": agent.name, "n": bucket.replies},
            ))
        if i % label_every == 0:
            parts.append(format_html(
                '<text class="tick" x="{}" y="{}" text-anchor="middle">{}</text>',
                _f(left + i * slot + slot / 2), height - 8, day.strftime("%m-%d"),
            ))
    return _svg(width, height, _("Replies per day, stacked by agent"),
                format_html_join("", "{}", ((p,) for p in parts)))


def _hbar_chart(
    title: str,
    rows: list[tuple[str, str, list[tuple[float | None, str, str]]]],
    axis_max: float,
    unit: str,
) -> SafeString:
    """Horizontal bars: rows of (label, colour, [(value, bar class, tooltip), ...])."""
    # Sized for a third of a wide screen, so the 11px labels render at about their own size.
    bar_h, gap, left, width, right = 14, 10, 110, 440, 64
    plot_w = width - left - right
    group_h = max(len(bars) for _label, _colour, bars in rows) * (bar_h + 2) if rows else bar_h
    height = max(len(rows), 1) * (group_h + gap) + 24
    parts: list[SafeString] = []
    y = 8.0
    for label, colour, bars in rows:
        parts.append(format_html(
            '<text class="label" x="{}" y="{}" text-anchor="end">{}</text>',
            left - 6, _f(y + group_h / 2 + 4), Truncator(label).chars(18),
        ))
        for value, css, tooltip in bars:
            if value is None:
                parts.append(format_html(
                    '<text class="value" x="{}" y="{}">{}</text>', left + 4, _f(y + bar_h - 3),
                    _("no data"),
                ))
            else:
                w = max(value / axis_max * plot_w, 1) if axis_max else 1
                parts.append(format_html(
                    '<rect class="{}" x="{}" y="{}" width="{}" height="{}" fill="{}">'
                    '<title>{}</title></rect>'
                    '<text class="value" x="{}" y="{}">{}{}</text>',
                    css, left, _f(y), _f(w), bar_h, colour, tooltip,
                    _f(left + w + 4), _f(y + bar_h - 3), _number(value), unit,
                ))
            y += bar_h + 2
        y += gap - 2 + (group_h - len(bars) * (bar_h + 2))
    parts.append(format_html(
        '<line class="axis" x1="{}" x2="{}" y1="{}" y2="{}"/>'
        '<text class="tick" x="{}" y="{}" text-anchor="end">{}{}</text>',
        left, left + plot_w, _f(y), _f(y), left + plot_w, _f(y + 14), _number(axis_max), unit,
    ))
    return _svg(width, int(height), title, format_html_join("", "{}", ((p,) for p in parts)))


def failure_rate_chart(stats: Stats) -> SafeString:
    rows = []
    for agent, bucket in stats.agent_rows():
        rate = bucket.failure_rate
        pct = None if rate is None else rate * 100
        tooltip = _("%(agent)s: %(failed)s of %(replies)s replies failed") % {
            "agent": agent.name, "failed": bucket.failed, "replies": bucket.replies,
        }
        rows.append((agent.name, agent.color, [(pct, "bar", tooltip)]))
    peak = max((b[0][0] or 0 for _n, _c, b in rows), default=0)
    return _hbar_chart(_("Failure rate per agent"), rows, nice_ceiling(peak) if peak else 1,
                       "%")


def latency_chart(stats: Stats, metric: str) -> SafeString:
    """p50 (solid) and p95 (light) per agent; `metric` is "ttft" or "duration"."""
    title = (
        _("Time to first token per agent (p50, p95)") if metric == "ttft"
        else _("Reply duration per agent (p50, p95)")
    )
    rows = []
    for agent, bucket in stats.agent_rows():
        p50, p95 = getattr(bucket, f"{metric}_p50"), getattr(bucket, f"{metric}_p95")
        rows.append((agent.name, agent.color, [
            (p50, "bar", _("%(agent)s p50: %(ms)s ms") % {"agent": agent.name, "ms": p50}),
            (p95, "bar bar-p95", _("%(agent)s p95: %(ms)s ms") % {"agent": agent.name, "ms": p95}),
        ]))
    peak = max((v or 0 for _n, _c, bars in rows for v, _css, _t in bars), default=0)
    return _hbar_chart(title, rows, nice_ceiling(peak), " ms")


# Review scores (docs/review.md) -----------------------------------------------------------------
# Per active score config: the distribution of scores per agent and period, reviewer throughput
# and agreement between reviewers. Four queries whatever the range or the number of configs,
# agents and scores: the active configs, the scores of the range (a few columns each, read with
# an iterator), the items done in the range per (reviewer, queue), and the queue-config pairs.

# Up to a month of days reads per day; a longer range per week (Monday first), so a year is 53
# rows per agent, not 366.
REVIEW_DAILY_MAX_DAYS = 31


@dataclass
class Distribution:
    """Scores of one config in one bucket: counts per value (categorical, boolean) or the mean
    (numeric)."""

    count: int = 0
    total: float = 0.0  # numeric: sum of the values
    numbers: int = 0  # numeric: values that are numbers
    counts: Counter[str] = field(default_factory=Counter)

    @property
    def mean(self) -> float | None:
        return self.total / self.numbers if self.numbers else None


@dataclass(frozen=True)
class ReviewerInfo:
    id: int | None  # None: the user was deleted
    name: str


@dataclass
class ConfigStats:
    id: int
    name: str
    kind: str
    # Categorical and boolean: (value key, heading) per column, the options in order, then any
    # value no longer among them.
    columns: list[tuple[str, str]]
    agents: list[AgentInfo]
    by_period_agent: dict[tuple[date, int], Distribution]
    by_agent: dict[int, Distribution]
    total: Distribution
    agreement: Agreement
    # Targets scored by two or more reviewers (source "human") for this config.
    double_reviewed: int
    throughput: list[tuple[ReviewerInfo, int]]

    @property
    def is_numeric(self) -> bool:
        return self.kind == "numeric"

    @property
    def kind_label(self) -> str:
        return str(ScoreConfig.Kind(self.kind).label)

    @property
    def method(self) -> str:
        return "alpha" if self.is_numeric else "kappa"

    def _cells(self, dist: Distribution) -> list[int]:
        return [dist.counts.get(key, 0) for key, _label in self.columns]

    def period_rows(self) -> list[tuple[date, AgentInfo, Distribution, list[int]]]:
        """Active (period, agent) pairs, newest period first."""
        periods = sorted({p for p, _a in self.by_period_agent}, reverse=True)
        return [
            (period, agent, dist, self._cells(dist))
            for period in periods
            for agent in self.agents
            if (dist := self.by_period_agent.get((period, agent.id))) is not None
        ]

    def agent_rows(self) -> list[tuple[AgentInfo, Distribution, list[int]]]:
        return [(a, self.by_agent[a.id], self._cells(self.by_agent[a.id])) for a in self.agents]

    @property
    def total_cells(self) -> list[int]:
        return self._cells(self.total)

    @property
    def agreement_note(self) -> str:
        """Why the agreement figure is missing ("" when there is one)."""
        if self.agreement.reason == NO_UNITS:
            return _("No item was scored by two reviewers.")
        if self.agreement.reason == NO_VARIATION:
            return _("Undefined: every score was the same value, so agreement by chance is "
                     "already complete.")
        return ""


@dataclass
class ReviewStats:
    weekly: bool
    configs: list[ConfigStats]
    # Items done in the range, per reviewer: (reviewer, total, [(queue name, done), ...]).
    reviewers: list[tuple[ReviewerInfo, int, list[tuple[str, int]]]]


def _value_key(value: Any) -> str:
    """A hashable, displayable key: JSON's spelling for booleans, the text for the rest."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _option_label(option: Any) -> str:
    if isinstance(option, dict):
        option = option.get("label", option.get("value", ""))
    return option if isinstance(option, str) else _value_key(option)


def compute_review_stats(start: date, end: date) -> ReviewStats:
    """Score statistics of the replies and conversations created `start`..`end` (inclusive, in
    the current time zone), and the queue items completed in that range."""
    tz = timezone.get_current_timezone()
    lo, hi = _bounds(start, end, tz)
    weekly = (end - start).days + 1 > REVIEW_DAILY_MAX_DAYS

    def period(moment: datetime) -> date:
        day = timezone.localtime(moment, tz).date()
        return day - timedelta(days=day.weekday()) if weekly else day

    configs = list(ScoreConfig.objects.filter(is_active=True).order_by("name", "pk"))
    by_config: dict[int, ConfigStats] = {}
    seen_agents: dict[int, dict[int, AgentInfo]] = {}
    # (config, target) -> human values, first scored first; target: ("m", message) or
    # ("c", conversation).
    raters: dict[int, dict[tuple[str, Any], list[Any]]] = {}
    for config in configs:
        if config.kind == ScoreConfig.Kind.BOOLEAN:
            columns = [("true", _("Yes")), ("false", _("No"))]
        elif config.kind == ScoreConfig.Kind.CATEGORICAL:
            labels = [_option_label(o) for o in config.options or []]
            columns = [(label, label) for label in dict.fromkeys(labels)]
        else:
            columns = []
        by_config[config.pk] = ConfigStats(
            config.pk, config.name, config.kind, columns, [], {}, {}, Distribution(),
            Agreement(None, 0, NO_UNITS), 0, [],
        )
        seen_agents[config.pk] = {}
        raters[config.pk] = {}

    scores = (
        Score.objects.filter(config__is_active=True)
        .annotate(target_at=Coalesce("message__created_at", "conversation__created_at"))
        .filter(target_at__gte=lo, target_at__lt=hi)
        .values_list(
            "config_id", "conversation_id", "message_id", "source", "value", "target_at",
            "conversation__agent_id", "conversation__agent__slug", "conversation__agent__name",
        )
        .order_by("created_at", "pk")
    )
    for (config_id, conversation_id, message_id, source, value, target_at, agent_id, slug,
         agent_name) in scores.iterator(chunk_size=REPLY_CHUNK):
        result = by_config.get(config_id)
        if result is None:  # activated after the first query
            continue
        agents = seen_agents[config_id]
        if agent_id not in agents:
            agents[agent_id] = AgentInfo(agent_id, slug, agent_name, "")
        key = _value_key(value)
        for dist in (
            result.by_period_agent.setdefault((period(target_at), agent_id), Distribution()),
            result.by_agent.setdefault(agent_id, Distribution()),
            result.total,
        ):
            dist.count += 1
            if result.is_numeric:
                if _is_number(value):
                    dist.numbers += 1
                    dist.total += value
            else:
                dist.counts[key] += 1
        if source == Score.Source.HUMAN:
            target = ("m", message_id) if message_id is not None else ("c", conversation_id)
            raters[config_id].setdefault(target, []).append(value)

    for config_id, result in by_config.items():
        result.agents = sorted(seen_agents[config_id].values(),
                               key=lambda a: (a.name.lower(), a.id))
        known = {key for key, _label in result.columns}
        if not result.is_numeric:
            result.columns += [(key, key) for key in sorted(result.total.counts)
                               if key not in known]
        units = [values for values in raters[config_id].values() if len(values) >= 2]
        result.double_reviewed = len(units)
        if result.is_numeric:
            result.agreement = krippendorff_alpha_interval(
                [[v for v in values if _is_number(v)] for values in units])
        else:
            # Cohen's kappa takes two ratings: the first two reviewers of each target.
            result.agreement = cohen_kappa(
                (_value_key(values[0]), _value_key(values[1])) for values in units)

    # Throughput: items completed in the range, per (reviewer, queue).
    username = f"completed_by__{get_user_model().USERNAME_FIELD}"
    done = (
        QueueItem.objects.filter(status=QueueItem.Status.DONE, completed_at__gte=lo,
                                 completed_at__lt=hi)
        .values_list("completed_by_id", username, "queue_id", "queue__name")
        .annotate(n=Count("pk"))
        .order_by()
    )
    queue_configs: dict[int, set[int]] = {}
    for queue_id, config_id in ReviewQueue.configs.through.objects.values_list(
            "reviewqueue_id", "scoreconfig_id"):
        queue_configs.setdefault(queue_id, set()).add(config_id)
    per_reviewer: dict[ReviewerInfo, list[tuple[str, int]]] = {}
    per_config: dict[int, Counter[ReviewerInfo]] = {pk: Counter() for pk in by_config}
    for user_id, name, queue_id, queue_name, n in done:
        reviewer = ReviewerInfo(user_id, name if user_id is not None else _("Deleted user"))
        per_reviewer.setdefault(reviewer, []).append((queue_name, n))
        for config_id in queue_configs.get(queue_id, ()):
            if config_id in per_config:
                per_config[config_id][reviewer] += n

    def by_done(item: tuple[ReviewerInfo, int]) -> tuple[int, str]:
        return -item[1], item[0].name.lower()

    for config_id, counts in per_config.items():
        by_config[config_id].throughput = sorted(counts.items(), key=by_done)
    reviewers = [
        (reviewer, sum(n for _q, n in queues), sorted(queues, key=lambda q: (-q[1], q[0])))
        for reviewer, queues in per_reviewer.items()
    ]
    reviewers.sort(key=lambda row: (-row[1], row[0].name.lower()))
    return ReviewStats(weekly, [by_config[c.pk] for c in configs], reviewers)
