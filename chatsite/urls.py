from __future__ import annotations

from django.contrib import admin
from django.urls import include, path, re_path

from chatsite import health, oidc, theme
from chatsite.metrics_view import metrics_view
from conversations import api, canned_views, openapi, settings_views, team_views, views
from conversations.review import reviewer
from conversations.review import send as review_send
from conversations.review import views as review

# With SSO_ONLY the admin's password login takes superusers only (the break-glass account).
admin.site.login_form = oidc.BreakGlassAdminLoginForm

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", metrics_view, name="metrics"),
    path("", views.home, name="home"),
    path("conversations/new", views.conversation_new, name="conversation_new"),
    path("c/<uuid:conversation_id>/", views.chat, name="chat"),
    path("c/<uuid:conversation_id>/rename", views.conversation_rename, name="conversation_rename"),
    path(
        "c/<uuid:conversation_id>/archive", views.conversation_archive, name="conversation_archive"
    ),
    path("c/<uuid:conversation_id>/delete", views.conversation_delete, name="conversation_delete"),
    path("replies/", canned_views.replies, name="my_replies"),
    path("replies/<int:reply_id>/", canned_views.reply_edit, name="my_reply_edit"),
    path("replies/<int:reply_id>/delete", canned_views.reply_delete, name="my_reply_delete"),
    path("settings/", settings_views.settings_page, name="settings"),
    path("settings/tokens", settings_views.token_create, name="token_create"),
    path("settings/tokens/<int:token_id>/revoke", settings_views.token_revoke,
         name="token_revoke"),
    path("teams/<slug:slug>/", team_views.team_page, name="team"),
    path("teams/<slug:slug>/replies/", canned_views.replies, name="team_replies"),
    path("teams/<slug:slug>/replies/<int:reply_id>/", canned_views.reply_edit,
         name="team_reply_edit"),
    path("teams/<slug:slug>/replies/<int:reply_id>/delete", canned_views.reply_delete,
         name="team_reply_delete"),
    path("accounts/login/", oidc.LoginView.as_view(), name="login"),
    path("accounts/logout/", oidc.LogoutView.as_view(), name="logout"),
    # Single sign-on (chatsite/oidc.py): 404 while OIDC_ISSUER is empty.
    path("oidc/authenticate/", oidc.AuthenticateView.as_view(), name="oidc_authentication_init"),
    path("oidc/callback/", oidc.CallbackView.as_view(), name="oidc_authentication_callback"),
    path("i18n/", include("django.conf.urls.i18n")),
    path("theme", theme.set_theme, name="set_theme"),
    path("admin/", admin.site.urls),
    path("stats/", review.stats_view, name="review_stats"),
    path("review/send/<uuid:conversation_id>/", review_send.send_to_queue,
         name="review_send"),
    path("review/", reviewer.queue_list, name="reviewer_queues"),
    path("review/queues/<int:queue_id>/start", reviewer.queue_start, name="reviewer_start"),
    path("review/items/<int:item_id>/", reviewer.item_page, name="reviewer_item"),
    path("api/v1/openapi.json", openapi.openapi_json, name="api_openapi"),
    path("api/v1/conversations", api.conversations, name="api_conversations"),
    path(
        "api/v1/conversations/export",
        review.conversation_export,
        name="api_conversations_export",
    ),
    path(
        "api/v1/conversations/<uuid:conversation_id>",
        api.conversation_detail,
        name="api_conversation",
    ),
    path(
        "api/v1/conversations/<uuid:conversation_id>/branch",
        api.conversation_branch,
        name="api_conversation_branch",
    ),
    path(
        "api/v1/conversations/<uuid:conversation_id>/attachments",
        api.conversation_attachments,
        name="api_conversation_attachments",
    ),
    path("api/v1/attachments/<uuid:attachment_id>", api.attachment_file, name="api_attachment"),
    path(
        "api/v1/messages/<uuid:message_id>/feedback",
        api.message_feedback,
        name="api_message_feedback",
    ),
    path("api/v1/canned-replies", api.canned_replies, name="api_canned_replies"),
    path("api/v1/scores", api.scores, name="api_scores"),
    path("api/v1/review/queues", api.review_queues, name="api_review_queues"),
    # Plain segments, not <int:>: any other id is the API's 404 (services.queues), in its shape.
    path("api/v1/review/queues/<queue_id>/claim", api.review_queue_claim,
         name="api_review_queue_claim"),
    path("api/v1/review/items/<item_id>/complete", api.review_item_complete,
         name="api_review_item_complete"),
    path("api/v1/review/items/<item_id>/skip", api.review_item_skip,
         name="api_review_item_skip"),
    # Any path under api/ (a newline included: <path:> stops at one) answers in the error shape.
    re_path(r"^api/(?P<rest>[\s\S]*)\Z", api.not_found),
]
