from django.db import migrations, models


def backfill_user_name(apps, schema_editor):
    """Existing fallbacks take their creator's current username (the best that is still known)."""
    Fallback = apps.get_model("warehouse", "Fallback")
    for user_id, username in (Fallback.objects.filter(user__isnull=False)
                              .values_list("user_id", "user__username").distinct()):
        Fallback.objects.filter(user_id=user_id).update(user_name=username)


class Migration(migrations.Migration):

    dependencies = [
        ('warehouse', '0003_fallback_cancelled_by_request_left_at'),
    ]

    operations = [
        migrations.AddField(
            model_name='fallback',
            name='user_name',
            field=models.CharField(blank=True, help_text="its creator's username when created (spend keeps it if the account is renamed or goes)", max_length=150),
        ),
        migrations.RunPython(backfill_user_name, migrations.RunPython.noop),
    ]
