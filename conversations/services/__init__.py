"""Use cases shared by the HTML views, the JSON API, the websocket consumer, the relay and admin.

One module per subject: `conversations` (create, list, read, change, delete, transcript),
`runs` (accepting a message or an interrupt answer, the relay's writes, the reaper),
`branches` (the message tree and its active path), `edits` (regenerate and edit: a branch or a
fork), `attachments` (uploads), `teams` (membership, team agents), `desk` (internal notes,
assignment and handoff), `canned` (canned replies), `costs` (reply costs, team budgets),
`scoring` and `queues` with `queue_rules` (the review workspace), `tokens` (personal API
tokens), `feedback`, `identity` (single sign-on users and the group → role map), `agents` (with
the admin's connection test), `review` (reviewers' stamped writes), `webhooks` (outbound events,
queued on commit and sent by the worker), `validation` (the JSON gate and every field's rules),
`audit` (the audit trail: events, logged bulk updates) and `errors`.
Callers use `from conversations import services` and `services.<name>`: the names are
re-exported here.

Everything here is synchronous ORM code; async callers wrap it with `database_sync_to_async`.
Problems are domain errors (`errors.py`): `InvalidInput` with a stable code, and `NotFound` for
what does not exist or is not the user's, so each surface renders the same error its own way.
Imports run one way: nothing here imports the relay, the consumer, the views, the admin or
Channels; deletions, branch changes and desk events reach the relay through signals
(`conversation_deleted`, `branch_selected`, `conversation_event`).
"""

from __future__ import annotations

from conversations.services import (
    audit,
    canned,
    costs,
    identity,
    queue_rules,
    queues,
    scoring,
    teams,
    tokens,
    webhooks,
)
from conversations.services.agents import (
    ConnectionResult,
    agent_config,
    agent_options_problems,
    check_connection,
    ensure_demo_agent,
    last_used_agent,
    provider_kinds,
    resolve_agent,
    vendor_timeouts,
)
from conversations.services.attachments import IMAGE_TYPES as ATTACHMENT_IMAGE_TYPES
from conversations.services.attachments import MAX_PER_MESSAGE as ATTACHMENTS_PER_MESSAGE
from conversations.services.attachments import get_attachment, open_attachment, upload_attachment
from conversations.services.attachments import max_bytes as attachment_max_bytes
from conversations.services.attachments import too_large as attachment_too_large
from conversations.services.branches import (
    ActivePath,
    active_path,
    branch_selected,
    select_branch,
)
from conversations.services.conversations import (
    PAGE_SIZE,
    conversation_deleted,
    create_conversation,
    delete_conversation,
    get_conversation,
    list_conversations,
    load_conversation,
    may_open,
    path_transcript,
    recent_messages,
    stored_message,
    transcript,
    update_conversation,
)
from conversations.services.costs import check_budget
from conversations.services.desk import (
    add_note,
    apply_assignment,
    assign,
    assign_many,
    conversation_event,
    desk_choices,
    transfer,
    transfer_many,
)
from conversations.services.edits import edit_message, regenerate_reply
from conversations.services.errors import InvalidInput, MissingScope, NotFound, Unauthenticated
from conversations.services.feedback import (
    FEEDBACK_COMMENT_MAX_CHARS,
    clear_feedback,
    set_feedback,
)
from conversations.services.queues import (
    QueueSummary,
    claim_next,
    complete,
    enqueue,
    item_for,
    may_claim,
    queues_for,
    skip,
)
from conversations.services.review import (
    REVIEW_FIELDS,
    add_label,
    set_review_status,
    stamp_review,
)
from conversations.services.runs import (
    OWNER_LEASE,
    AcceptedMessage,
    RunOutcome,
    ToolCallRecord,
    accept_interrupt_answer,
    accept_user_message,
    build_run_request,
    cancel_orphaned_run,
    finish_run,
    flush_runs,
    is_orphaned,
    reap_orphaned_runs,
    set_vendor_conversation_id,
)
from conversations.services.scoring import scores_for, set_score, validate_value
from conversations.services.tokens import (
    TokenAuth,
    create_token,
    revoke_token,
    revoke_user_token,
    token_created,
    token_revoked,
    user_tokens,
)
from conversations.services.validation import (
    CLIENT_ID_MAX_CHARS,
    CONTENT_MAX_CHARS,
    EXTERNAL_USER_ID_MAX_CHARS,
    TITLE_MAX_CHARS,
    clean_client_id,
    clean_content,
    clean_external_user_id,
    clean_metadata,
    clean_title,
)

__all__ = [
    # Personal API tokens (issue 14).
    "MissingScope",
    "TokenAuth",
    "Unauthenticated",
    "create_token",
    "revoke_token",
    "revoke_user_token",
    "token_created",
    "token_revoked",
    "tokens",
    "user_tokens",
    "audit",
    # Review workspace (issue 13): scores and queues.
    "QueueSummary",
    "claim_next",
    "complete",
    "enqueue",
    "item_for",
    "may_claim",
    "queue_rules",
    "queues",
    "queues_for",
    "scores_for",
    "scoring",
    "set_score",
    "skip",
    "validate_value",
    "add_note",
    "load_conversation",
    "may_open",
    "apply_assignment",
    "assign",
    "assign_many",
    "desk_choices",
    "transfer_many",
    "conversation_event",
    "transfer",
    "CLIENT_ID_MAX_CHARS",
    "CONTENT_MAX_CHARS",
    "EXTERNAL_USER_ID_MAX_CHARS",
    "FEEDBACK_COMMENT_MAX_CHARS",
    "OWNER_LEASE",
    "PAGE_SIZE",
    "REVIEW_FIELDS",
    "TITLE_MAX_CHARS",
    "AcceptedMessage",
    "ATTACHMENTS_PER_MESSAGE",
    "ATTACHMENT_IMAGE_TYPES",
    "attachment_max_bytes",
    "canned",
    "costs",
    "identity",
    "teams",
    "webhooks",
    "check_budget",
    "attachment_too_large",
    "get_attachment",
    "open_attachment",
    "upload_attachment",
    "ActivePath",
    "active_path",
    "branch_selected",
    "edit_message",
    "path_transcript",
    "regenerate_reply",
    "select_branch",
    "stored_message",
    "ConnectionResult",
    "InvalidInput",
    "NotFound",
    "RunOutcome",
    "ToolCallRecord",
    "accept_interrupt_answer",
    "accept_user_message",
    "add_label",
    "agent_config",
    "vendor_timeouts",
    "agent_options_problems",
    "build_run_request",
    "cancel_orphaned_run",
    "check_connection",
    "clean_client_id",
    "clean_content",
    "clean_external_user_id",
    "clean_metadata",
    "clean_title",
    "clear_feedback",
    "conversation_deleted",
    "create_conversation",
    "delete_conversation",
    "ensure_demo_agent",
    "last_used_agent",
    "finish_run",
    "flush_runs",
    "get_conversation",
    "list_conversations",
    "provider_kinds",
    "is_orphaned",
    "reap_orphaned_runs",
    "recent_messages",
    "resolve_agent",
    "set_feedback",
    "set_review_status",
    "set_vendor_conversation_id",
    "stamp_review",
    "transcript",
    "update_conversation",
]
