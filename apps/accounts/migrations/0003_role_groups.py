"""Data migration: the role groups (analyst, model manager, kb editor) and their permissions."""
from django.db import migrations

GROUP_PERMISSIONS = {
    "analyst": ("search_samples",),
    "model manager": ("manage_models",),
    "kb editor": ("edit_kb",),
}
PERMISSION_NAMES = {
    "search_samples": "Search samples and run warehouse fallbacks within budget",
    "manage_models": "Register model versions and move aliases",
    "edit_kb": "Create, change and delete entities, mentions and aliases in the serving KB",
}


def create_groups(apps, schema_editor):
    ContentType = apps.get_model("contenttypes", "ContentType")
    Permission = apps.get_model("auth", "Permission")
    Group = apps.get_model("auth", "Group")
    # post_migrate creates permissions only after every migration ran: create them here.
    content_type, _ = ContentType.objects.get_or_create(app_label="accounts", model="apitoken")
    for group_name, codenames in GROUP_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=group_name)
        for codename in codenames:
            permission, _ = Permission.objects.get_or_create(
                content_type=content_type, codename=codename, defaults={"name": PERMISSION_NAMES[codename]}
            )
            group.permissions.add(permission)


def delete_groups(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=list(GROUP_PERMISSIONS)).delete()


class Migration(migrations.Migration):

    dependencies = [
        ("accounts", "0002_apitoken_read_only_permissions"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_groups, delete_groups)]
