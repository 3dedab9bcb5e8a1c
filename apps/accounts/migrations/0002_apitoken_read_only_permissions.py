from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("accounts", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="apitoken",
            name="read_only",
            field=models.BooleanField(default=False, help_text="A read-only token may only GET: any other API call answers 403."),
        ),
        migrations.AlterModelOptions(
            name="apitoken",
            options={
                "ordering": ["-created_at"],
                "permissions": [
                    ("search_samples", "Search samples and run warehouse fallbacks within budget"),
                    ("manage_models", "Register model versions and move aliases"),
                    ("edit_kb", "Create, change and delete entities, mentions and aliases in the serving KB"),
                ],
            },
        ),
    ]
