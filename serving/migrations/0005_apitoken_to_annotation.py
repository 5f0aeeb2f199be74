"""ApiToken now lives in annotation: point PredictionLog.token at it and forget serving's.

State only: the foreign key's column and constraint already reference the same table.
"""
import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("annotation", "0006_apitoken_from_serving"),
        ("serving", "0004_apitoken_user"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="predictionlog",
                    name="token",
                    field=models.ForeignKey(
                        blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+", to="annotation.apitoken"),
                ),
                migrations.DeleteModel(name="ApiToken"),
            ],
            database_operations=[],
        ),
    ]
