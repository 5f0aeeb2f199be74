"""The label ledger stays the one writer of the running counts and the one caller of the
retrain trigger, and every label writer refuses an unknown value in the same shape."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from annotation.errors import InvalidLabel
from annotation.models import Label
from annotation.services import (
    label_correct,
    label_submit,
    production_label_correct,
    production_sample_create,
    sample_lease_next,
)
from annotation.services.production import ProductionPayload
from serving.services import feedback_record

ROOT = Path(__file__).resolve().parents[2]
APPS = ("core", "annotation", "learning", "serving")
LEDGER = "annotation/services/ledger.py"
TWIN = "annotation/queue_functions_sql.py"  # the ledger's PL/pgSQL twin (hot path)

_WRITES = {"create", "get_or_create", "update_or_create", "bulk_create", "bulk_update",
           "update", "delete", "save"}
_SQL_WRITE = re.compile(r"\b(UPDATE|INSERT\s+INTO|DELETE\s+FROM)\b", re.IGNORECASE)
_COUNTS_TABLE = "annotation_labelcounts"


def _names(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def _chain(node: ast.AST) -> tuple[str | None, list[str]]:
    """The root name and the attributes called or read along ``a.b(...).c(...)``."""
    attributes = []
    while True:
        if isinstance(node, ast.Call):
            node = node.func
        elif isinstance(node, ast.Attribute):
            attributes.append(node.attr)
            node = node.value
        elif isinstance(node, ast.Name):
            return node.id, attributes
        else:
            return None, attributes


def ledger_offenses(source: str) -> list[tuple[int, str]]:
    """(line, what) for each write of ``LabelCounts`` and each call of ``labels_added``.

    Raw SQL counts as a write when the statement names the table, or its f-string the
    model; taking the model's table name apart from the statement counts as one too.
    """
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            root, attributes = _chain(node.func)
            called = attributes[0] if attributes else root
            if called == "labels_added":
                found.append((node.lineno, "calls the retrain trigger hooks.labels_added"))
            elif root == "LabelCounts" and _WRITES & set(attributes):
                found.append((node.lineno, "writes LabelCounts through the ORM"))
        elif (isinstance(node, ast.Attribute) and node.attr == "_meta"
              and isinstance(node.value, ast.Name) and node.value.id == "LabelCounts"):
            found.append((node.lineno, "takes LabelCounts' table for raw SQL"))
        elif isinstance(node, ast.JoinedStr):  # f"UPDATE {table(LabelCounts)} ..."
            text = "".join(v.value for v in node.values if isinstance(v, ast.Constant))
            if _SQL_WRITE.search(text) and "LabelCounts" in _names(node):
                found.append((node.lineno, "writes LabelCounts in raw SQL"))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if re.search(_SQL_WRITE.pattern + r"\s+\"?" + _COUNTS_TABLE, node.value,
                         re.IGNORECASE):
                found.append((node.lineno, f"writes {_COUNTS_TABLE} in raw SQL"))
    return found


def test_only_the_ledger_writes_the_counts_or_calls_the_retrain_trigger():
    offenses, writers = [], set()
    for app in APPS:
        for path in sorted((ROOT / app).rglob("*.py")):
            relative = path.relative_to(ROOT).as_posix()
            if "/migrations/" in relative:  # frozen history, never imported by the code
                continue
            found = ledger_offenses(path.read_text())
            if found:
                writers.add(relative)
            if relative not in (LEDGER, TWIN):
                offenses += [f"{relative}:{line}: {what}" for line, what in found]
    assert not offenses, (
        "only annotation/services/ledger.py (and its PL/pgSQL twin) may write the running "
        "label counts or call hooks.labels_added; call the ledger's functions instead:\n"
        + "\n".join(offenses))
    assert writers == {LEDGER, TWIN}  # the scan sees the ledger's own writes


@pytest.mark.parametrize("source, flagged", [
    ("hooks.labels_added(project=p)", True),
    ("labels_added(project=p)", True),
    ("LabelCounts.objects.create(project=p)", True),
    ("LabelCounts.objects.filter(project=p).update(current_labels=F('current_labels') + 1)", True),
    ("LabelCounts.objects.update_or_create(project=p, defaults={})", True),
    ("cursor.execute(f'UPDATE {table(LabelCounts)} SET current_labels = 1')", True),
    ("cursor.execute('update annotation_labelcounts set current_labels = 1')", True),
    ("table = quote_name(LabelCounts._meta.db_table)", True),
    ("LabelCounts.objects.filter(project=p).first()", False),
    ("cursor.execute(f'SELECT labeled_pool FROM {table(LabelCounts)}')", False),
    ("label_counts_add(project_id=1, current_labels=1)", False),
])
def test_the_scan_sees_each_kind_of_write(source, flagged):
    assert bool(ledger_offenses(source)) is flagged


def test_every_label_writer_refuses_an_unknown_value_in_one_shape(project, annotator,
                                                                   make_samples):
    make_samples(2)
    sample = sample_lease_next(project=project, annotator=annotator)
    label = label_submit(sample=sample, annotator=annotator, value=project.labels[0])
    writers = {
        "submit": lambda: label_submit(sample=sample_lease_next(project=project,
                                                                annotator=annotator),
                                       annotator=annotator, value="cat"),
        "correction": lambda: label_correct(sample=sample, scientist=project.owner,
                                            value="cat"),
        "production": lambda: production_sample_create(
            project=project, payload=ProductionPayload(image=b""), value="cat"),
        "production correction": lambda: production_label_correct(label=label, value="cat"),
        "feedback": lambda: feedback_record(project=project, label="cat",
                                            instance={"image_base64": ""}),
    }
    shapes = {}
    for name, write in writers.items():
        with pytest.raises(InvalidLabel) as refused:
            write()
        shapes[name] = (refused.value.code, refused.value.message, refused.value.detail)
    expected = ("invalid_label", f"'cat' is not a label of project {project.slug!r}",
                {"value": "cat", "labels": project.labels})
    assert shapes == dict.fromkeys(writers, expected)
    assert Label.objects.count() == 1


def test_every_label_writer_records_the_version_served_as_it_writes(project, annotator,
                                                                      make_samples):
    from learning.models import ModelVersion
    from tests.factories import png_bytes

    make_samples(2)
    before = label_submit(sample=sample_lease_next(project=project, annotator=annotator),
                          annotator=annotator, value=project.labels[0])
    ModelVersion.objects.create(project=project, number=1, status="ready")
    ModelVersion.objects.create(project=project, number=2, status="ready", is_served=True)
    sample = sample_lease_next(project=project, annotator=annotator)
    labels = {"submit": label_submit(sample=sample, annotator=annotator,
                                     value=project.labels[0], suggested_version=1)}
    labels["correction"] = label_correct(sample=sample, scientist=project.owner,
                                         value=project.labels[1])
    labels["production"] = production_sample_create(
        project=project, payload=ProductionPayload(image=png_bytes(1)), value=project.labels[0])
    labels["production correction"] = production_label_correct(label=labels["production"],
                                                               value=project.labels[1])
    stored = {name: Label.objects.values_list("served_version", "suggested_version")
              .get(pk=label.pk) for name, label in labels.items()}
    assert stored == {"submit": (2, 1), "correction": (2, None), "production": (2, None),
                      "production correction": (2, None)}
    assert (before.served_version, before.suggested_version) == (None, None)
