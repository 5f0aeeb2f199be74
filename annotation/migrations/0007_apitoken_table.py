"""Give the token table its app's name, once serving no longer claims it.

An explicit rename: both PostgreSQL and SQLite (3.26+) carry the foreign key from
``serving_predictionlog`` over to the renamed table.
"""
from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ("annotation", "0006_apitoken_from_serving"),
        ("serving", "0005_apitoken_to_annotation"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.AlterModelTable(name="apitoken", table=None)],
            database_operations=[migrations.RunSQL(
                'ALTER TABLE "serving_apitoken" RENAME TO "annotation_apitoken"',
                reverse_sql='ALTER TABLE "annotation_apitoken" RENAME TO "serving_apitoken"',
            )],
        ),
    ]
