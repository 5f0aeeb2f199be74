"""Create the PL/pgSQL functions that lease and label in one round trip (PostgreSQL only).

The SQL comes from ``annotation.queue_functions_sql`` as it is when this migration runs,
so this migration is only frozen while that text is: an edit there needs a new migration
that runs the new text on databases where this one already ran (see that module).
"""
from django.db import migrations

from annotation import queue_functions_sql


def _run(statements):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor != "postgresql":
            return  # other databases keep the Python path of annotation.services.queue
        for statement in statements:
            schema_editor.execute(statement, params=None)  # no placeholders: % is literal

    return run


class Migration(migrations.Migration):

    dependencies = [
        ("annotation", "0004_project_default_strategy_promotion"),
        ("learning", "0001_initial"),  # the submit function reads learning_modelversion
    ]

    operations = [
        migrations.RunPython(_run(queue_functions_sql.CREATE), _run(queue_functions_sql.DROP)),
    ]
