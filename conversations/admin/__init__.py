"""The admin, one module a subject as Django's own admin splits its options: `conversations`
(the review desk: conversations, messages, labels, feedback), `agents`, `teams` (teams, their
members, canned replies), `review_queues` (score configs, queues, items, scores), `tokens`
(personal API tokens: list, revoke), `audit` (audit events and auditlog's row changes,
read-only), `webhooks` (endpoints, deliveries and their attempts), and the `filters` and
`actions` they use. Importing the package registers every ModelAdmin. The admin imports
services, never a provider: the agent form's choices and checks and "Test connection" are
services (services/agents.py).
"""

from __future__ import annotations

from conversations.admin import (
    agents,
    audit,
    conversations,
    review_queues,
    teams,
    tokens,
    webhooks,
)

__all__ = ["agents", "audit", "conversations", "review_queues", "teams", "tokens", "webhooks"]
