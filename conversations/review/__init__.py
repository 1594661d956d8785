"""The review desk: what reviewers read and download, outside the chat.

`transcript` renders a conversation for the admin's change page (safe markdown, per-message
views), `export` streams CSV/JSONL downloads (admin actions and the export API), `stats`
computes the statistics page's figures and charts, and `views` holds the two HTTP views
(`/stats/`, `GET /api/v1/conversations/export`). The admin (conversations/admin/) uses the first
three; the conversation search they share is `ConversationQuerySet.search` (models.py).
"""
