"""Importing samples: every kind and format, the all-or-nothing policy, the report, undo."""
import io
import json
import zipfile

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from PIL import Image

from annotation.errors import InvalidImport, NotAMember
from annotation.models import ImportJob, Label, Sample
from annotation.services import import_job_create, import_job_run
from annotation.services.imports import staging
from tests.factories import ProjectFactory, UserFactory, png_bytes


@pytest.fixture
def text_project(db):
    return ProjectFactory(kind="text", labels=["pos", "neg"], test_fraction=0.2)


@pytest.fixture
def tabular_project(db):
    return ProjectFactory(kind="tabular", labels=["a", "b"])


def run(project, name, data, **options):
    job = import_job_create(project=project, user=project.owner,
                            upload=SimpleUploadedFile(name, data), options=options)
    return import_job_run(job_id=job.pk)


def zip_of(entries: dict) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_import_text_csv_with_ids_labels_and_random_test_split(text_project):
    lines = ["external_id,text,label"] + [f"t{i},text number {i},{'pos' if i < 3 else ''}"
                                          for i in range(200)]
    job = run(text_project, "texts.csv", "\n".join(lines).encode())
    assert (job.status, job.rows_ok, job.rows_bad, job.phase) == ("done", 200, 0, "writing")
    samples = Sample.objects.filter(project=text_project)
    assert samples.count() == 200 and samples.filter(import_job=job).count() == 200
    assert samples.get(external_id="t7").text == "text number 7"
    assert set(samples.filter(status="labeled").values_list("external_id", flat=True)) == {
        "t0", "t1", "t2"}
    assert Label.objects.filter(annotator=text_project.owner, value="pos").count() == 3
    assert 10 < samples.filter(split="test").count() < 80  # ~20% at random


def test_import_text_jsonl_with_custom_text_column(text_project):
    data = b'{"body": "hello", "label": "neg"}\n\n{"body": "world"}\n'
    job = run(text_project, "t.jsonl", data, text_column="body")
    assert job.status == "done" and job.rows_ok == 2
    assert sorted(Sample.objects.values_list("text", flat=True)) == ["hello", "world"]


def test_import_tabular_csv_types_values_and_records_columns(tabular_project):
    data = b"external_id,age,city,label\nr1,31,Paris,a\nr2,4.5,,\nr3,,Oslo,b\n"
    job = run(tabular_project, "rows.csv", data)
    assert job.status == "done"
    values = dict(Sample.objects.values_list("external_id", "values"))
    assert values == {"r1": {"age": 31, "city": "Paris"}, "r2": {"age": 4.5, "city": None},
                      "r3": {"age": None, "city": "Oslo"}}
    tabular_project.refresh_from_db()
    assert tabular_project.columns == ["age", "city"]
    with pytest.raises(InvalidImport, match="missing: city; unexpected: height"):
        run(tabular_project, "more.csv", b"age,height\n1,2\n")
    jsonl = run(tabular_project, "more.jsonl", b'{"age": 1, "city": "Rome"}\n{"age": 2}\n')
    assert jsonl.status == "failed" and "missing city" in jsonl.report["errors"][0]["error"]


def test_import_images_zip_with_labels_from_folders_and_thumbnails(project):
    data = zip_of({"0/a.png": png_bytes(0), "1/b.png": png_bytes(1), "c.png": png_bytes(2),
                   "__MACOSX/._a.png": b"junk"})
    job = run(project, "digits.zip", data, labels_from_folders=True)
    assert job.status == "done" and job.rows_total == 3
    a = Sample.objects.get(external_id="0/a")
    assert a.status == "labeled" and a.labels.get().value == "0"
    assert Sample.objects.get(external_id="c").status == "unlabeled"
    with a.thumbnail.open("rb") as thumb:
        assert Image.open(thumb).format == "PNG"
    assert a.image.name.startswith(f"samples/{project.pk}/import-{job.pk}/")


def test_malformed_csv_is_refused_whole_with_the_line(text_project):
    data = b'text,label\n"fine",pos\n"broken quote,pos\nnext,neg\n'
    job = run(text_project, "bad.csv", data)
    assert job.status == "failed" and "malformed CSV" in job.report["message"]
    assert not Sample.objects.exists()


def test_jsonl_with_a_broken_line_names_the_row_and_writes_nothing(text_project):
    data = b'{"text": "ok"}\n{"text": "broken"\n{"text": "also ok"}\n[1, 2]\n'
    job = run(text_project, "t.jsonl", data)
    assert job.status == "failed" and job.rows_bad == 2 and job.rows_ok == 2
    assert [(e["row"], e["line"]) for e in job.report["errors"]] == [(2, 2), (4, 4)]
    assert "invalid JSON" in job.report["errors"][0]["error"]
    assert not Sample.objects.exists() and not Label.objects.exists()


def test_unknown_label_wrong_cell_count_and_empty_text_are_reported(text_project):
    data = b"text,label\nfine,pos\nbad,cat\nx,pos,extra\n   ,neg\n"
    job = run(text_project, "t.csv", data)
    assert job.status == "failed"
    errors = {e["row"]: e["error"] for e in job.report["errors"]}
    assert "unknown label 'cat'" in errors[2]
    assert "expected 2 cells, got 3" in errors[3]
    assert "empty" in errors[4]
    assert not Sample.objects.exists()


def test_duplicate_external_ids_in_file_and_in_project_are_bad_rows(text_project, settings):
    settings.IMPORT_BATCH_ROWS = 2  # the repeat lands in another batch
    assert run(text_project, "a.csv", b"external_id,text\nold,x\n").status == "done"
    job = run(text_project, "b.csv", b"external_id,text\nn1,a\nn2,b\nn3,c\nn1,d\nold,e\n")
    errors = {e["row"]: e["error"] for e in job.report["errors"]}
    assert job.status == "failed" and set(errors) == {4, 5}
    assert "same as row 1" in errors[4] and "already in the project" in errors[5]
    assert Sample.objects.count() == 1


def test_report_is_capped_but_counts_every_bad_row(text_project, settings):
    settings.IMPORT_REPORT_MAX_ERRORS = 3
    data = "text,label\n" + "".join(f"t{i},cat\n" for i in range(10))
    job = run(text_project, "t.csv", data.encode())
    assert job.rows_bad == 10 and len(job.report["errors"]) == 3 and job.report["truncated"]


def test_wrong_format_missing_column_and_non_member_are_refused_before_storing(text_project):
    with pytest.raises(InvalidImport, match="text projects import"):
        run(text_project, "t.zip", b"PK")
    with pytest.raises(InvalidImport, match="no 'text' column"):
        run(text_project, "t.csv", b"body,label\nx,pos\n")
    with pytest.raises(NotAMember):
        import_job_create(project=text_project, user=UserFactory(),
                          upload=SimpleUploadedFile("t.csv", b"text\nx\n"))
    assert not ImportJob.objects.exists()


def test_failure_while_writing_undoes_every_batch_and_reports(text_project, settings, monkeypatch):
    settings.IMPORT_BATCH_ROWS = 5
    if connection.vendor == "postgresql":  # rows are COPYed batch by batch while the file is read
        owner, name = staging.CopyStage, "flush"
    else:  # rows are spooled, then written batch by batch
        owner, name = staging, "samples_insert"
    real = getattr(owner, name)
    calls = {"n": 0}

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("disk full")
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, failing)
    data = "text,label\n" + "".join(f"t{i},pos\n" for i in range(20))
    with pytest.raises(RuntimeError):
        run(text_project, "t.csv", data.encode())
    job = ImportJob.objects.get()
    assert job.status == "failed" and "disk full" in job.report["message"]
    assert not Sample.objects.exists() and not Label.objects.exists()


def test_running_job_of_a_dead_worker_is_undone_and_rerun(text_project):
    job = import_job_create(project=text_project, user=text_project.owner,
                            upload=SimpleUploadedFile("t.csv", b"text\na\nb\n"))
    Sample.objects.create(project=text_project, text="left over", import_job=job)
    ImportJob.objects.filter(pk=job.pk).update(status="running")
    ImportJob.objects.filter(pk=job.pk).update(updated_at="2000-01-01T00:00:00Z")
    job = import_job_run(job_id=job.pk)
    assert job.status == "done"
    assert sorted(Sample.objects.values_list("text", flat=True)) == ["a", "b"]
    assert import_job_run(job_id=job.pk).status == "done"  # idempotent
    assert Sample.objects.count() == 2


def test_non_image_and_bomb_in_zip_are_bad_rows(project):
    bomb = io.BytesIO()
    Image.new("1", (10_000, 10_000)).save(bomb, format="PNG")  # 10^8 pixels in a few kB
    data = zip_of({"ok.png": png_bytes(1), "notes.txt": b"hello", "bomb.png": bomb.getvalue(),
                   "fake.png": b"\x89PNG\r\n\x1a\n not really"})
    job = run(project, "imgs.zip", data)
    errors = {e["entry"]: e["error"] for e in job.report["errors"]}
    assert job.status == "failed" and set(errors) == {"notes.txt", "bomb.png", "fake.png"}
    assert "too large" in errors["bomb.png"] and "pixels" in errors["bomb.png"]
    assert not Sample.objects.exists()


def test_image_over_the_pixel_limit_is_refused_before_decoding(project, settings):
    settings.MAX_IMAGE_PIXELS = 50
    job = run(project, "imgs.zip", zip_of({"big.png": png_bytes(0, size=8)}))
    assert "8x8 pixels, more than 50" in job.report["errors"][0]["error"]


@pytest.mark.parametrize("name", ["../evil.png", "/etc/evil.png", "a/../../evil.png"])
def test_zip_slip_paths_refuse_the_archive(project, name):
    with pytest.raises(InvalidImport, match="path"):
        run(project, "slip.zip", zip_of({"ok.png": png_bytes(0), name: png_bytes(1)}))
    assert not ImportJob.objects.exists()


def test_zip_with_symlink_or_too_many_entries_is_refused(project, settings):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        link = zipfile.ZipInfo("link.png")
        link.external_attr = (0o120777 << 16)
        archive.writestr(link, "/etc/passwd")
    with pytest.raises(InvalidImport, match="symbolic link"):
        run(project, "link.zip", buffer.getvalue())
    settings.IMPORT_MAX_ZIP_ENTRIES = 2
    with pytest.raises(InvalidImport, match="more than 2"):
        run(project, "many.zip", zip_of({f"{i}.png": png_bytes(0) for i in range(3)}))


def test_multiple_image_files_are_packed_and_imported(project):
    files = [SimpleUploadedFile(f"img{i}.png", png_bytes(i)) for i in range(3)]
    job = import_job_create(project=project, user=project.owner, image_files=files)
    job = import_job_run(job_id=job.pk)
    assert job.status == "done"
    assert sorted(Sample.objects.values_list("external_id", flat=True)) == ["img0", "img1", "img2"]


def test_oversized_image_upload_is_refused(project, settings):
    settings.IMPORT_MAX_IMAGE_BYTES = 10
    with pytest.raises(InvalidImport, match="more than 10"):
        import_job_create(project=project, user=project.owner,
                          image_files=[SimpleUploadedFile("a.png", png_bytes(0)),
                                       SimpleUploadedFile("b.png", png_bytes(1))])


def test_progress_callback_sees_both_phases(text_project, settings):
    settings.IMPORT_BATCH_ROWS = 10
    seen = []
    job = import_job_create(project=text_project, user=text_project.owner,
                            upload=SimpleUploadedFile("t.jsonl", "".join(
                                json.dumps({"text": f"t{i}"}) + "\n" for i in range(50)).encode()))
    import_job_run(job_id=job.pk, progress=lambda j: seen.append((j.phase, j.rows_done)))
    assert ("checking", 20) in seen and ("checking", 50) in seen
    assert seen[-1] == ("writing", 50)
    if connection.vendor != "postgresql":  # PostgreSQL writes while checking
        assert ("writing", 20) in seen


def test_tabs_newlines_backslashes_and_quotes_survive_the_import(text_project, tabular_project):
    text = 'a\ttab, a "quote", a back\\slash\nand a second line\r\n'
    data = ("external_id,text,label\n" + '"id\\1","' + text.replace('"', '""') + '",pos\n'
            + "x\x00y,nul id,\n").encode()
    job = run(text_project, "t.csv", data)
    assert job.status == "failed" and "NUL" in job.report["errors"][0]["error"]
    job = run(text_project, "t.csv", data.rsplit(b"x\x00y", 1)[0])
    assert job.status == "done"
    sample = Sample.objects.get(project=text_project)
    assert (sample.external_id, sample.text, sample.labels.get().value) == ("id\\1", text, "pos")
    job = run(tabular_project, "r.jsonl", b'{"city": "a\\tb\\\\c\\n\\"d\\""}\n')
    assert job.status == "done"
    assert Sample.objects.get(project=tabular_project).values == {"city": 'a\tb\\c\n"d"'}


def test_text_the_database_refuses_makes_bad_rows_with_the_reason(text_project,
                                                                    tabular_project):
    """A lone surrogate (Python's json reads "\\ud800" without complaint) or a NUL is a bad
    row naming the problem: not a failed insert halfway through the import."""
    data = (b'{"text": "fine", "label": "pos"}\n'
            b'{"text": "broken \\ud800 half"}\n'
            b'{"text": "ok", "external_id": "id\\udcff"}\n'
            b'{"text": "nul \\u0000 inside"}\n'
            + b'{"text": ' + b"[" * 100_000 + b"\n")
    job = run(text_project, "t.jsonl", data)
    assert job.status == "failed" and job.rows_bad == 4 and job.rows_ok == 1
    errors = {e["row"]: e["error"] for e in job.report["errors"]}
    assert "the text is not valid Unicode (a lone surrogate U+D800" in errors[2]
    assert "the external id is not valid Unicode" in errors[3]
    assert "the text contains a NUL character" in errors[4]
    assert "nested too deeply" in errors[5]
    assert not Sample.objects.exists() and not Label.objects.exists()
    job = run(tabular_project, "r.jsonl",
              b'{"x": 1, "city": "a"}\n{"x": 2, "city": "b\\ud83d"}\n{"x": 3, "ci\\u0000ty": "c"}\n')
    errors = {e["row"]: e["error"] for e in job.report["errors"]}
    assert job.status == "failed" and set(errors) == {2, 3}
    assert "column 'city': the value is not valid Unicode" in errors[2]
    assert "the field name 'ci\\x00ty' contains a NUL" in errors[3]
    assert not Sample.objects.exists()


def test_a_csv_column_name_with_a_nul_refuses_the_file(tabular_project):
    with pytest.raises(InvalidImport, match="column 'ci\\\\x00ty' contains a NUL"):
        run(tabular_project, "r.csv", b"x,ci\x00ty\n1,a\n")
    assert not ImportJob.objects.exists()


def test_the_import_api_answers_400_with_the_bad_rows_on_both_databases(text_project):
    from rest_framework.test import APIClient

    from serving.services import api_token_create

    _token, key = api_token_create(project=text_project, scopes=["admin"])
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    body = b'{"text": "fine"}\n{"text": "bad \\ud800"}\n{"text": "nul \\u0000"}\n'
    response = api.post(f"/api/v1/projects/{text_project.slug}/samples?filename=t.jsonl",
                        data=body, content_type="application/x-ndjson")
    assert response.status_code == 400, response.content
    report = response.json()["detail"]["report"]
    assert [e["row"] for e in report["errors"]] == [2, 3]
    assert not Sample.objects.exists()


def test_a_large_import_refreshes_the_planners_statistics_once_committed(
        tabular_project, monkeypatch, django_capture_on_commit_callbacks):
    """Until autovacuum runs, PostgreSQL plans the first retrain's queries on the table as it
    was before the import; a large import analyzes the sample table when it commits."""
    from django.test.utils import CaptureQueriesContext

    from annotation.services.imports import running

    if connection.vendor != "postgresql":
        pytest.skip("ANALYZE is PostgreSQL's")
    monkeypatch.setattr(running, "ANALYZE_AFTER_ROWS", 3)
    data = b"x,y\n" + b"".join(f"{i},{i * 2}\n".encode() for i in range(5))
    with CaptureQueriesContext(connection) as queries:
        with django_capture_on_commit_callbacks(execute=True):
            assert run(tabular_project, "rows.csv", data).status == ImportJob.Status.DONE
    assert any(q["sql"].startswith("ANALYZE annotation_sample") for q in queries.captured_queries)
    with CaptureQueriesContext(connection) as queries:
        with django_capture_on_commit_callbacks(execute=True):
            run(tabular_project, "few.csv", b"x,y\n1,2\n")
    assert not any("ANALYZE" in q["sql"] for q in queries.captured_queries)
