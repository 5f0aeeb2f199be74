"""The exact training set of a version, downloadable after later corrections."""
import csv
import io
import json

from django.urls import reverse

from annotation.models import Label, Sample
from annotation.services.review import label_correct
from learning import label_snapshots
from learning.models import TrainingSnapshot
from tests.serving.conftest import train_version


def _download(client, project, number, fmt="csv", split=""):
    url = reverse(f"version-training-set-{fmt}", args=[project.slug, number])
    response = client.get(url + (f"?split={split}" if split else ""))
    body = b"".join(response.streaming_content).decode() if response.streaming else response.content.decode()
    return response, body


def _rows(body, fmt):
    if fmt == "csv":
        return list(csv.DictReader(io.StringIO(body)))
    return [json.loads(line) for line in body.splitlines()]


def test_snapshot_bytes_round_trip_and_refuse_a_wrong_sha():
    ids = [5, 3, 900, 901, 902, 10**12]
    sha = label_snapshots.snapshot_sha256(ids)
    assert label_snapshots.decode(label_snapshots.encode(ids), sha256=sha).tolist() == sorted(ids)
    try:
        label_snapshots.decode(label_snapshots.encode(ids[:-1]), sha256=sha)
    except label_snapshots.SnapshotMismatch:
        pass
    else:
        raise AssertionError("a snapshot with another label was accepted")


def test_training_set_is_the_labels_as_trained_after_a_correction(client, labeled_project):
    project = labeled_project
    version = train_version(project)
    snapshot = TrainingSnapshot.objects.get(version=version)
    assert snapshot.label_count == version.trained_on_label_count + version.test_label_count
    sample = Sample.objects.filter(project=project, split="pool").order_by("pk").first()
    old = Label.objects.current().get(sample=sample)
    new_value = next(v for v in project.labels if v != old.value)
    new = label_correct(sample=sample, scientist=project.owner, value=new_value)
    client.force_login(project.owner)

    for fmt in ("csv", "jsonl"):
        response, body = _download(client, project, version.number, fmt)
        assert response.status_code == 200 and response.streaming
        assert response["X-Label-Snapshot-Sha256"] == version.label_snapshot_sha256
        rows = _rows(body, fmt)
        assert len(rows) == version.trained_on_label_count
        assert {r["split"] for r in rows} == {"pool"}
        mine = [r for r in rows if int(r["sample_id"]) == sample.pk]
        assert len(mine) == 1 and int(mine[0]["label_id"]) == old.pk
        assert mine[0]["label"] == old.value and mine[0]["annotator"] == old.annotator.username
        assert str(new.pk) not in {str(r["label_id"]) for r in rows}
    # Train and test labels together hash to the version's recorded sha256.
    _response, body = _download(client, project, version.number, "csv", split="all")
    ids = [int(r["label_id"]) for r in _rows(body, "csv")]
    assert label_snapshots.snapshot_sha256(ids) == version.label_snapshot_sha256
    _response, body = _download(client, project, version.number, "csv", split="test")
    assert len(_rows(body, "csv")) == version.test_label_count
    assert _download(client, project, version.number, "csv", split="nope")[0].status_code == 400
    # The next version trains on the correction.
    later = train_version(project)
    _response, body = _download(client, project, later.number, "jsonl")
    mine = [r for r in _rows(body, "jsonl") if r["sample_id"] == sample.pk]
    assert mine[0]["label_id"] == new.pk and mine[0]["label"] == new_value


def test_a_version_without_recorded_ids_is_given_only_while_its_labels_are_unchanged(
        client, labeled_project):
    project = labeled_project
    version = train_version(project)
    TrainingSnapshot.objects.filter(version=version).delete()  # as trained before this release
    client.force_login(project.owner)
    response, body = _download(client, project, version.number, "csv")
    assert response.status_code == 200 and len(_rows(body, "csv")) == version.trained_on_label_count
    sample = Sample.objects.filter(project=project, split="pool").first()
    value = Label.objects.current().get(sample=sample).value
    label_correct(sample=sample, scientist=project.owner,
                  value=next(v for v in project.labels if v != value))
    response, body = _download(client, project, version.number, "csv")
    assert response.status_code == 409 and "cannot be given exactly" in body


def test_a_tampered_snapshot_is_refused(client, labeled_project):
    project = labeled_project
    version = train_version(project)
    snapshot = TrainingSnapshot.objects.get(version=version)
    ids = label_snapshots.decode(snapshot.label_ids, sha256=version.label_snapshot_sha256)
    snapshot.label_ids = label_snapshots.encode(ids[1:].tolist())
    snapshot.save()
    client.force_login(project.owner)
    response, body = _download(client, project, version.number, "csv")
    assert response.status_code == 409 and "hash to" in body
