"""The reviewer group: reads every conversation in the admin, sets review fields, manages labels,
exports and sees the stats; cannot edit agents, users or transcripts."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

REVIEWER_PERMISSIONS = [
    "view_agent",
    "view_conversation",
    "change_conversation",  # the admin lets only the review fields change
    "export_conversation",
    "view_stats",
    "view_message",
    "view_toolcall",
    "view_feedback",
    "view_label",
    "add_label",
    "change_label",
]


def create_reviewer_group(apps, schema_editor):
    # Permissions are normally created after all migrations; create them now so the group can
    # hold them on a fresh database.
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    group, _ = Group.objects.get_or_create(name="reviewer")
    group.permissions.set(
        Permission.objects.filter(
            content_type__app_label="conversations", codename__in=REVIEWER_PERMISSIONS
        )
    )


def remove_reviewer_group(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name="reviewer").delete()


class Migration(migrations.Migration):
    dependencies = [
        ("conversations", "0002_review"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_reviewer_group, remove_reviewer_group)]
