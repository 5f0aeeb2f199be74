"""Feedback on predictions: the kept instance, the true label, when, and the sample it made."""
import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("annotation", "0002_import_jobs"),
        ("serving", "0002_predictionlog_prediction_id"),
    ]

    operations = [
        migrations.AddField(
            model_name="predictionlog",
            name="instance",
            field=models.JSONField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="predictionlog",
            name="true_label",
            field=models.CharField(blank=True, default="", max_length=200),
        ),
        migrations.AddField(
            model_name="predictionlog",
            name="feedback_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="predictionlog",
            name="sample",
            field=models.ForeignKey(
                blank=True, db_constraint=False, null=True,
                on_delete=django.db.models.deletion.SET_NULL, related_name="+",
                to="annotation.sample",
            ),
        ),
        migrations.AddIndex(
            model_name="predictionlog",
            index=models.Index(
                condition=models.Q(("feedback_at__isnull", False)),
                fields=["project", "feedback_at"], name="predictionlog_by_feedback",
            ),
        ),
    ]
