"""Exporting labels: current or full history, CSV safe from formulas, streamed."""
import csv
import io
import json

from django.utils import timezone

from annotation.exports import csv_safe
from annotation.models import Label, Sample
from annotation.selectors import label_export_chunks
from tests.factories import ProjectFactory, UserFactory


def _labeled(project, external_id, *values):
    sample = Sample.objects.create(project=project, text="t", external_id=external_id,
                                   status="labeled")
    user = UserFactory()
    labels = []
    for value in values:
        if labels:
            Label.objects.filter(pk=labels[-1].pk).update(superseded_at=timezone.now())
        labels.append(Label.objects.create(sample=sample, annotator=user, value=value))
    return sample


def test_csv_safe_neutralises_formula_cells():
    assert [csv_safe(v) for v in ["=1+1", "+A1", "-2", "@SUM(A1)", "\tx", "plain", 5]] == [
        "'=1+1", "'+A1", "'-2", "'@SUM(A1)", "'\tx", "plain", 5]


def test_export_current_csv_one_row_per_sample_with_formulas_neutralised(db):
    project = ProjectFactory(kind="text", labels=["=1+1", "b"])
    _labeled(project, "=HYPERLINK(\"x\")", "b", "=1+1")
    _labeled(project, "plain", "b")
    text = "".join(label_export_chunks(project=project, history=False, fmt="csv"))
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [(r["external_id"], r["label"]) for r in rows] == [
        ("'=HYPERLINK(\"x\")", "'=1+1"), ("plain", "b")]


def test_export_history_jsonl_keeps_superseded_labels(db):
    project = ProjectFactory(kind="text", labels=["a", "b"])
    _labeled(project, "s1", "a", "b")
    lines = [json.loads(line) for line in
             "".join(label_export_chunks(project=project, history=True, fmt="jsonl")).splitlines()]
    assert [(line["label"], line["superseded_at"] is not None) for line in lines] == [
        ("a", True), ("b", False)]


def test_export_streams_in_chunks(db, settings):
    project = ProjectFactory(kind="text", labels=["a", "b"])
    user = UserFactory()
    samples = Sample.objects.bulk_create(
        [Sample(project=project, text="t", external_id=f"s{i}", status="labeled")
         for i in range(1200)])
    Label.objects.bulk_create([Label(sample=s, annotator=user, value="a") for s in samples])
    chunks = list(label_export_chunks(project=project, history=False, fmt="csv"))
    assert len(chunks) >= 3  # header chunk + 500-row chunks, never one big string
    assert sum(chunk.count("\n") for chunk in chunks) == 1201


def test_export_history_has_the_versions_each_label_was_given_under(client, db):
    project = ProjectFactory(kind="text", labels=["a", "b"])
    sample = _labeled(project, "s1", "a", "b")
    first, second = Label.objects.filter(sample=sample).order_by("id")
    Label.objects.filter(pk=second.pk).update(served_version=3, suggested_version=2)
    client.force_login(project.owner)
    url = f"/projects/{project.slug}/export"
    rows = list(csv.DictReader(io.StringIO(
        b"".join(client.get(f"{url}.csv?history=1").streaming_content).decode())))
    assert [(r["label"], r["served_version"], r["suggested_version"]) for r in rows] == [
        ("a", "", ""), ("b", "3", "2")]  # CSV leaves a null empty
    lines = [json.loads(line) for line in
             b"".join(client.get(f"{url}.jsonl?history=1").streaming_content).splitlines()]
    assert [(line["label"], line["served_version"], line["suggested_version"])
            for line in lines] == [("a", None, None), ("b", 3, 2)]
    current = b"".join(client.get(f"{url}.csv").streaming_content).decode().splitlines()[0]
    assert current == "sample_id,external_id,split,label,annotator,labeled_at"  # unchanged
