"""ApiToken moves from serving to annotation, which owns projects and their access.

The table is the one serving created (``annotation_apitoken``), taken over in the migration
state only, then renamed to ``annotation_apitoken``; no row is copied or lost.
"""
import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("annotation", "0005_queue_functions"),
        ("serving", "0004_apitoken_user"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="ApiToken",
                    fields=[
                        ("id", models.BigAutoField(auto_created=True, primary_key=True,
                                                   serialize=False, verbose_name="ID")),
                        ("name", models.CharField(blank=True, default="", max_length=100)),
                        ("key_hash", models.CharField(max_length=64, unique=True)),
                        ("key_prefix", models.CharField(max_length=12)),
                        ("scopes", models.JSONField(default=list)),
                        ("created_at", models.DateTimeField(auto_now_add=True)),
                        ("last_used_at", models.DateTimeField(blank=True, null=True)),
                        ("revoked_at", models.DateTimeField(blank=True, null=True)),
                        ("project", models.ForeignKey(
                            on_delete=django.db.models.deletion.CASCADE,
                            related_name="api_tokens", to="annotation.project")),
                        ("user", models.ForeignKey(
                            blank=True, null=True, on_delete=django.db.models.deletion.CASCADE,
                            related_name="api_tokens", to=settings.AUTH_USER_MODEL)),
                    ],
                    options={"db_table": "annotation_apitoken"},
                ),
            ],
            database_operations=[],
        ),
    ]
