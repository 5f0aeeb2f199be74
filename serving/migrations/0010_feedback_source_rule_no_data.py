"""Where a prediction's true label came from (a client's feedback or a routed input's
label), so live accuracy counts client feedback only; the covering index of the rows with
feedback carries the new column, so both accuracies are still counted from the index.
And since when a rule's metric has had no data."""
from django.db import migrations, models

FEEDBACK_INDEX = "predictionlog_feedback_cover"


def sources_fill(apps, schema_editor):
    """Rows with feedback before this migration: a routed input's (its sample has
    ``origin=production`` and the label is not the feedback user's) or a client's."""
    PredictionLog = apps.get_model("serving", "PredictionLog")
    Sample = apps.get_model("annotation", "Sample")
    Label = apps.get_model("annotation", "Label")
    with_feedback = PredictionLog.objects.filter(feedback_at__isnull=False)
    routed_samples = Sample.objects.filter(origin="production").exclude(
        pk__in=Label.objects.filter(annotator__username__startswith="api-feedback-")
        .values("sample_id")).values("pk")
    with_feedback.filter(sample_id__in=routed_samples).update(feedback_source="routed")
    with_feedback.filter(feedback_source="").update(feedback_source="client")


def _index(schema_editor, include: str) -> None:
    schema_editor.execute(f"DROP INDEX IF EXISTS {FEEDBACK_INDEX}")
    if schema_editor.connection.vendor != "postgresql":
        include = ""
    schema_editor.execute(
        f"CREATE INDEX {FEEDBACK_INDEX} ON serving_predictionlog (project_id, feedback_at)"
        f"{include} WHERE feedback_at IS NOT NULL")


def index_with_source(apps, schema_editor):
    _index(schema_editor, " INCLUDE (true_label, predicted_label, model_version_id, feedback_source)")


def index_without_source(apps, schema_editor):
    _index(schema_editor, " INCLUDE (true_label, predicted_label, model_version_id)")


class Migration(migrations.Migration):

    dependencies = [
        ("annotation", "0014_lease_returns_origin"),
        ("serving", "0009_rules"),
    ]

    operations = [
        migrations.AddField(
            model_name="predictionlog",
            name="feedback_source",
            field=models.CharField(blank=True, choices=[("client", "Client"), ("routed", "Routed")],
                                   db_default="", default="", max_length=10),
        ),
        migrations.AddField(
            model_name="rule",
            name="no_data_since",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.RunPython(sources_fill, migrations.RunPython.noop),
        migrations.RunPython(index_with_source, index_without_source),
    ]
