"""Wiring of project creation, import and export: pages, the data API and the commands."""
import io
import json
import zipfile

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.http import StreamingHttpResponse
from rest_framework.test import APIClient

from annotation.models import ImportJob, Label, Project, Sample
from serving.services import api_token_create
from tests.factories import MembershipFactory, ProjectFactory, UserFactory, png_bytes


@pytest.fixture
def text_project(db):
    return ProjectFactory(kind="text", labels=["pos", "neg"])


def _csv(name="t.csv", body=b"external_id,text,label\na,hello,pos\nb,world,\n"):
    return SimpleUploadedFile(name, body, content_type="text/csv")


def test_project_create_page_creates_and_redirects_to_import(client, db):
    user = ProjectFactory().owner  # owners of a project (and staff) may create more
    client.force_login(user)
    assert client.get("/projects/new/").status_code == 200
    response = client.post("/projects/new/", {"name": "News", "slug": "news", "kind": "text",
                                              "labels": "pos, neg", "batch_size": 5,
                                              "test_fraction": 0.1})
    assert response.status_code == 302 and response["Location"] == "/projects/news/import/"
    project = Project.objects.get(slug="news")
    assert (project.owner, project.labels, project.batch_size) == (user, ["pos", "neg"], 5)
    bad = client.post("/projects/new/", {"name": "X", "slug": "news", "kind": "text",
                                         "labels": "only-one", "batch_size": 5,
                                         "test_fraction": 0.1})
    assert bad.status_code == 400 and b"exists already" in bad.content
    assert b"at least two labels" in bad.content


@pytest.mark.parametrize("role", [None, "annotator", "scientist"])
def test_only_owners_and_staff_may_create_projects(client, db, role):
    user = UserFactory()
    if role is not None:
        MembershipFactory(project=ProjectFactory(), user=user, role=role)
    client.force_login(user)
    assert b"New project" not in client.get("/").content
    assert client.get("/projects/new/").status_code == 403
    refused = client.post("/projects/new/", {"name": "News", "slug": "news", "kind": "text",
                                             "labels": "pos, neg", "batch_size": 5,
                                             "test_fraction": 0.1})
    assert refused.status_code == 403 and b"owners and staff" in refused.content
    assert not Project.objects.filter(slug="news").exists()
    user.is_staff = True
    user.save(update_fields=["is_staff"])
    assert b"New project" in client.get("/").content
    assert client.get("/projects/new/").status_code == 200


def test_import_page_uploads_and_job_page_polls_until_done(client, text_project):
    client.force_login(text_project.owner)
    assert client.get(f"/projects/{text_project.slug}/import/").status_code == 200
    response = client.post(f"/projects/{text_project.slug}/import/", {"files": _csv()})
    job = ImportJob.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/projects/{text_project.slug}/imports/{job.pk}/"
    page = client.get(response["Location"])
    assert b"<html" in page.content and b'data-status="done"' in page.content
    assert b"hx-trigger" not in page.content  # finished: the partial stops polling
    partial = client.get(response["Location"], HTTP_HX_REQUEST="true")
    assert b"<html" not in partial.content and b'id="job-progress"' in partial.content
    assert Sample.objects.count() == 2


def test_running_job_partial_keeps_polling(client, text_project):
    job = ImportJob.objects.create(project=text_project, user=text_project.owner, format="csv",
                                   status="running", phase="checking", bytes_total=100,
                                   bytes_done=40)
    client.force_login(text_project.owner)
    partial = client.get(f"/projects/{text_project.slug}/imports/{job.pk}/", HTTP_HX_REQUEST="true")
    assert b'hx-trigger="every 1s"' in partial.content and b'value="40"' in partial.content


def test_import_page_shows_form_error_for_wrong_file_and_report_for_bad_rows(client, text_project):
    client.force_login(text_project.owner)
    wrong = client.post(f"/projects/{text_project.slug}/import/",
                        {"files": SimpleUploadedFile("x.zip", b"PK")})
    assert wrong.status_code == 400 and b"text projects import" in wrong.content
    bad = client.post(f"/projects/{text_project.slug}/import/",
                      {"files": _csv(body=b"text,label\nx,<script>cat</script>\n")}, follow=True)
    assert b'id="bad-rows"' in bad.content and b"unknown label" in bad.content
    assert b"<script>cat" not in bad.content and b"&lt;script&gt;cat" in bad.content
    assert not Sample.objects.exists()


def test_annotators_may_not_import_or_export(client, text_project):
    annotator = UserFactory()
    MembershipFactory(project=text_project, user=annotator, role="annotator")
    client.force_login(annotator)
    assert client.get(f"/projects/{text_project.slug}/import/").status_code == 403
    assert client.get(f"/projects/{text_project.slug}/export.csv").status_code == 403
    client.force_login(UserFactory())
    assert client.get(f"/projects/{text_project.slug}/import/").status_code == 404


def test_export_page_streams_csv_attachment(client, text_project):
    client.force_login(text_project.owner)
    client.post(f"/projects/{text_project.slug}/import/", {"files": _csv()})
    response = client.get(f"/projects/{text_project.slug}/export.csv?history=1")
    assert isinstance(response, StreamingHttpResponse)
    assert response["Content-Type"].startswith("text/csv")
    assert "labels-history.csv" in response["Content-Disposition"]
    body = b"".join(response.streaming_content).decode()
    assert body.splitlines()[0].startswith("label_id,sample_id,external_id")
    assert ",a,pool,pos," in body or ",a,test,pos," in body


def _api(project, scopes=("admin",)):
    _token, key = api_token_create(project=project, scopes=scopes)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


def test_api_import_returns_201_with_job_and_export_streams(text_project):
    api = _api(text_project)
    response = api.post(f"/api/v1/projects/{text_project.slug}/samples", {"file": _csv()},
                        format="multipart")
    assert response.status_code == 201, response.content
    assert response.json()["status"] == "done" and response.json()["rows_ok"] == 2
    assert Label.objects.get().annotator == text_project.owner
    job_url = response["Location"]
    assert api.get(job_url).json()["id"] == response.json()["id"]
    export = api.get(f"/api/v1/projects/{text_project.slug}/export.jsonl",
                     HTTP_ACCEPT="application/x-ndjson")
    assert export.status_code == 200 and isinstance(export, StreamingHttpResponse)
    rows = [json.loads(line) for line in b"".join(export.streaming_content).splitlines()]
    assert [(r["external_id"], r["label"]) for r in rows] == [("a", "pos")]


def test_api_bad_rows_give_400_with_report_and_write_nothing(text_project):
    api = _api(text_project)
    response = api.post(f"/api/v1/projects/{text_project.slug}/samples",
                        {"file": _csv("t.jsonl", b'{"text": "ok"}\n{broken\n')}, format="multipart")
    assert response.status_code == 400
    body = response.json()
    assert "refused" in body["error"] and body["detail"]["report"]["errors"][0]["row"] == 2
    assert body["code"] == "invalid_import"
    assert not Sample.objects.exists()


def test_api_zip_slip_and_missing_file_are_400(db):
    project = ProjectFactory()
    api = _api(project)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("../../etc/x.png", png_bytes(0))
    slip = api.post(f"/api/v1/projects/{project.slug}/samples",
                    {"file": SimpleUploadedFile("x.zip", buffer.getvalue())}, format="multipart")
    assert slip.status_code == 400 and "'..'" in slip.json()["error"]
    assert slip.json()["code"] == "invalid_import"
    assert api.post(f"/api/v1/projects/{project.slug}/samples", {}, format="multipart"
                    ).status_code == 400
    assert not ImportJob.objects.exists()


def test_api_multiple_image_files(db):
    project = ProjectFactory()
    api = _api(project)
    files = [SimpleUploadedFile(f"i{i}.png", png_bytes(i)) for i in range(2)]
    response = api.post(f"/api/v1/projects/{project.slug}/samples", {"files": files},
                        format="multipart")
    assert response.status_code == 201 and response.json()["rows_ok"] == 2


def test_api_access_rules(text_project):
    other = ProjectFactory(kind="text")
    url = f"/api/v1/projects/{text_project.slug}/export.csv"
    assert APIClient().get(url).status_code in (401, 403)
    assert _api(text_project, scopes=("predict",)).get(url).status_code == 403
    forbidden, unknown = _api(other).get(url), _api(other).get("/api/v1/projects/nope/export.csv")
    assert forbidden.status_code == unknown.status_code == 404  # alike: existence does not leak
    assert forbidden.json()["error"].replace(text_project.slug, "nope") == unknown.json()["error"]
    session = APIClient()
    session.force_login(text_project.owner)
    assert session.get(url).status_code == 200


def test_commands_create_import_and_export(db, tmp_path, capsys):
    owner = UserFactory(is_superuser=True)
    call_command("create_project", "reviews", "--kind", "text", "--labels", "pos,neg",
                 "--batch-size", "7")
    project = Project.objects.get(slug="reviews")
    assert (project.owner, project.batch_size, project.kind) == (owner, 7, "text")
    source = tmp_path / "r.csv"
    source.write_text("external_id,text,label\nr1,=1+1 great,pos\nr2,meh,\n")
    call_command("import_samples", "reviews", str(source), "--no-progress")
    assert Sample.objects.filter(project=project).count() == 2
    out = tmp_path / "labels.csv"
    call_command("export_labels", "reviews", "--output", str(out))
    assert out.read_text().splitlines()[1].split(",")[1:4] == ["r1", Sample.objects.get(
        external_id="r1").split, "pos"]
    bad = tmp_path / "bad.csv"
    bad.write_text("text,label\nok,pos\nnope,cat\n")
    with pytest.raises(CommandError, match="1 bad row"):
        call_command("import_samples", "reviews", str(bad), "--no-progress")
    assert "row 2 (line 3): unknown label 'cat'" in capsys.readouterr().err
    with pytest.raises(CommandError, match="exists already"):
        call_command("create_project", "reviews", "--kind", "text", "--labels", "a,b")


def test_exports_have_a_throttle_of_their_own(text_project, settings):
    """An export streams the whole project: it is not counted, or limited, as a read."""
    settings.API_THROTTLE_RATES = {**settings.API_THROTTLE_RATES, "export": "2/min",
                                   "read": "1000/min"}
    api = _api(text_project)
    url = f"/api/v1/projects/{text_project.slug}/export.csv"
    assert [api.get(url).status_code for _ in range(3)] == [200, 200, 429]
    assert api.get(f"/api/v1/projects/{text_project.slug}/models").status_code == 200


def _big_csv(rows: int) -> bytes:
    """About 520 bytes a row: 10,000 rows make a 5 MB file."""
    body = io.BytesIO()
    body.write(b"external_id,text,label\n")
    for i in range(rows):
        label = b"pos" if i % 10 == 0 else b""
        body.write(b"big-%06d,%s %06d,%s\n"
                   % (i, b"the quick brown fox jumps over the lazy dog " * 11, i, label))
    return body.getvalue()


@pytest.fixture
def no_cold_start(monkeypatch):
    """The k-means cold start after a big import is learning's business, and slow here."""
    from annotation import hooks

    monkeypatch.setattr(hooks, "samples_added", lambda **kwargs: None)


def _finished_job(api, response):
    job = api.get(response["Location"]).json()
    assert job["status"] == "done", job
    return job


def test_api_import_of_a_5_mb_multipart_file_answers_202_and_imports_every_row(
        text_project, django_capture_on_commit_callbacks, no_cold_start):
    rows = 10_000
    body = _big_csv(rows)
    assert len(body) > 5_000_000  # past Django's 2.5 MB in memory: a file on disk
    api = _api(text_project)
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(f"/api/v1/projects/{text_project.slug}/samples",
                            {"file": SimpleUploadedFile("big.csv", body, "text/csv"),
                             "text_column": "text"}, format="multipart")
    assert response.status_code == 202, response.content
    assert response.json()["status"] == "queued"
    job = _finished_job(api, response)
    assert job["rows_ok"] == rows and job["bytes_total"] == len(body)
    assert Sample.objects.filter(project=text_project).count() == rows
    assert Label.objects.filter(sample__project=text_project).count() == rows // 10


@pytest.mark.parametrize("named_by", ["content-disposition", "query"])
def test_api_import_of_a_5_mb_raw_body_answers_202_and_imports_every_row(
        text_project, django_capture_on_commit_callbacks, no_cold_start, named_by):
    rows = 10_000
    body = _big_csv(rows).replace(b"external_id,text,label", b"key,text,label", 1)
    api = _api(text_project)
    url = f"/api/v1/projects/{text_project.slug}/samples?id_column=key"
    headers = {}
    if named_by == "query":
        url += "&filename=big.csv"
    else:
        headers["HTTP_CONTENT_DISPOSITION"] = 'attachment; filename="big.csv"'
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(url, data=body, content_type="text/csv", **headers)
    assert response.status_code == 202, response.content
    job = _finished_job(api, response)
    assert job["rows_ok"] == rows and job["original_name"] == "big.csv"
    assert Sample.objects.filter(project=text_project, external_id="big-009999").exists()


def test_api_import_of_a_small_raw_body_is_done_at_once_and_an_unnamed_one_is_400(text_project):
    api = _api(text_project)
    url = f"/api/v1/projects/{text_project.slug}/samples"
    body = b"external_id,text,label\na,hello,pos\nb,world,\n"
    response = api.post(url + "?filename=t.csv", data=body, content_type="text/csv")
    assert response.status_code == 201 and response.json()["rows_ok"] == 2
    unnamed = api.post(url, data=body, content_type="text/csv")
    assert unnamed.status_code == 400 and "filename" in unnamed.json()["error"]


def test_api_import_over_the_upload_limit_is_413_before_reading(text_project, settings):
    settings.IMPORT_MAX_UPLOAD_BYTES = 10
    api = _api(text_project)
    response = api.post(f"/api/v1/projects/{text_project.slug}/samples?filename=t.csv",
                        data=b"x" * (2 * 1024 * 1024), content_type="text/csv")
    assert response.status_code == 413 and "import limit" in response.json()["error"]
    assert not ImportJob.objects.exists()


def test_a_file_name_the_database_cannot_store_is_a_400(text_project, db):
    api = _api(text_project)
    url = f"/api/v1/projects/{text_project.slug}/samples"
    raw = api.post(url + "?filename=a%00b.csv", data=b"text\nhi\n", content_type="text/csv")
    assert raw.status_code == 400 and "contains a NUL" in raw.json()["error"]
    assert not ImportJob.objects.exists()
    # Django's multipart parser cleans the names it reads; whatever it passes on is stored.
    multipart = api.post(url, {"file": SimpleUploadedFile("a\x00b.csv", b"text\nhi\n")},
                         format="multipart")
    assert multipart.status_code in (201, 400), multipart.content
    assert not any("\x00" in name for name in ImportJob.objects.values_list("original_name",
                                                                          flat=True))
