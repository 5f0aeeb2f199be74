"""Reads for projects, samples and labels."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from django.contrib.auth.models import AbstractBaseUser
from django.core.cache import cache
from django.db import connection
from django.db.models import Exists, OuterRef, Q, QuerySet

from annotation import hooks
from annotation.access import SCIENCE_ROLES, member_require
from annotation.exports import export_chunks
from annotation.models import (
    ImportJob,
    Label,
    LabelCounts,
    Membership,
    Project,
    ProjectSettingsChange,
    Sample,
)

EXPORT_CHUNK = 2000


def project_list_for_user(*, user: AbstractBaseUser) -> QuerySet[Project]:
    """Return the projects ``user`` is a member of (all of them for a superuser)."""
    projects = Project.objects.all()
    if not user.is_superuser:
        projects = projects.filter(memberships__user_id=user.pk)
    return projects.order_by("name")


def project_get_for_user(*, slug: str, user: AbstractBaseUser) -> Project | None:
    """Return the project with ``slug`` if ``user`` may see it, else None."""
    return project_list_for_user(user=user).filter(slug=slug).first()


def project_role(*, project: Project, user: AbstractBaseUser) -> str | None:
    """Return ``user``'s role in ``project``: a superuser counts as owner; None if no member."""
    if getattr(user, "is_superuser", False):
        return Membership.Role.OWNER
    return (
        Membership.objects.filter(project=project, user_id=user.pk)
        .values_list("role", flat=True).first()
    )


def membership_get(*, slug: str, user: AbstractBaseUser) -> Membership | None:
    """Return ``user``'s membership of the project ``slug``, its project loaded; None if none.

    One query for what every labeling API request needs first (the project and the caller's
    role); services take the membership as proof of the role check instead of repeating
    it. Written in SQL: building this join through the ORM costs about three times as much
    CPU as running it.
    """
    quote = connection.ops.quote_name
    projects = Project.objects.raw(
        f"SELECT p.*, m.id AS membership_id, m.role AS membership_role"
        f" FROM {quote(Project._meta.db_table)} p JOIN {quote(Membership._meta.db_table)} m"
        f" ON m.project_id = p.id WHERE p.slug = %s AND m.user_id = %s",
        [slug, user.pk],
    )
    for project in projects:
        return Membership(pk=project.membership_id, project=project, user_id=user.pk,
                          role=project.membership_role)
    return None


def project_roles_for_user(*, user: AbstractBaseUser) -> dict[int, str]:
    """Return project id -> ``user``'s role, for listing what each project offers them."""
    if getattr(user, "is_superuser", False):
        return {pk: Membership.Role.OWNER for pk in Project.objects.values_list("pk", flat=True)}
    return dict(Membership.objects.filter(user_id=user.pk).values_list("project_id", "role"))


def project_settings_history(*, project: Project, limit: int = 50) -> list[ProjectSettingsChange]:
    """Return the project's newest ``limit`` settings changes, newest first, with their users."""
    return list(ProjectSettingsChange.objects.filter(project=project)
                .select_related("user").order_by("-changed_at", "pk")[:limit])


@dataclass(frozen=True)
class Progress:
    total: int
    labeled: int
    labeled_pool: int
    labeled_test: int
    until_retrain: int

    @property
    def percent(self) -> float:
        return 100.0 * self.labeled / self.total if self.total else 0.0


SAMPLE_TOTAL_CACHE_SECONDS = 30


def project_sample_total(*, project: Project) -> int:
    """Return how many samples the project has, counted at most every 30 s per cache.

    The total changes only with imports (which forget the cached value), so a short-lived
    cached count keeps a million-row COUNT off every labeling request.
    """
    key = f"annotation:sample-total:{project.pk}"
    total = cache.get(key)
    if total is None:
        total = Sample.objects.filter(project=project).count()
        cache.set(key, total, SAMPLE_TOTAL_CACHE_SECONDS)
    return total


def project_sample_total_forget(*, project_id: int) -> None:
    cache.delete(f"annotation:sample-total:{project_id}")


def label_counts_get(*, project: Project) -> LabelCounts:
    """Return the project's running label counts (zeros before the first label)."""
    counts = LabelCounts.objects.filter(project=project).first()
    return counts or LabelCounts(project=project)


def project_progress(*, project: Project, requested_at_label_count: int) -> Progress:
    """Return labeling progress and how many labels remain until the next retrain.

    Reads the running counts kept with every label write, and a cached sample total:
    no row of the project's samples or labels is counted here.
    """
    counts = label_counts_get(project=project)
    since = counts.current_labels - requested_at_label_count
    return Progress(
        total=project_sample_total(project=project),
        labeled=counts.labeled_pool + counts.labeled_test,
        labeled_pool=counts.labeled_pool,
        labeled_test=counts.labeled_test,
        until_retrain=max(project.batch_size - since, 0),
    )


def label_count_current(*, project: Project) -> int:
    """Return how many current (not superseded) labels the project has."""
    return Label.objects.current().filter(sample__project=project).count()


def label_count_running(*, project: Project) -> int:
    """Return the project's current labels from its running counter, not by counting rows.

    Every label write updates ``LabelCounts`` in its own transaction, so inside that
    transaction this includes the write. Counts the rows once if the counter row is missing.
    """
    current = (
        LabelCounts.objects.filter(project_id=project.pk)
        .values_list("current_labels", flat=True).first()
    )
    return label_count_current(project=project) if current is None else current


def labeled_samples(*, project: Project, split: str,
                    payloads: bool = True) -> list[tuple[Sample, str, int]]:
    """Return (sample, label value, label id) for every labeled sample in ``split``.

    With several annotators per sample, the most recent current label wins. Without
    ``payloads`` the samples' values, texts and predictions are not read (callers that
    need only ids: decoding 2,000 rows of 64 JSON values took a retrain 1-2 s).
    """
    labels = (
        Label.objects.current()
        .filter(sample__project=project, sample__split=split)
        .select_related("sample")
        .order_by("sample_id", "-created_at", "-id")
    )
    if not payloads:
        labels = labels.defer("sample__values", "sample__text", "sample__prediction")
    seen: set[int] = set()
    rows = []
    for label in labels:
        if label.sample_id in seen:
            continue
        seen.add(label.sample_id)
        rows.append((label.sample, label.value, label.id))
    return rows


REVIEW_PAGE_SIZE = 25
# With the model filter on, at most this many samples are predicted to fill one page.
REVIEW_SCAN_LIMIT = 2000
_REVIEW_CHUNK = 100
_SUSPICIOUS_START_MAX = 10**6  # past any stored list; keeps OFFSET within the database's range


@dataclass(frozen=True)
class ReviewLabel:
    annotator: str
    value: str
    is_correction: bool


@dataclass(frozen=True)
class ReviewRow:
    sample: Sample
    value: str
    labels: list[ReviewLabel]
    annotators_disagree: bool
    suggestion: object | None  # from the ``suggestions`` hook (serving's Suggestion)
    model_disagrees: bool
    suspicion: object | None = None  # from the ``suspicious_labels`` hook: probably wrong


@dataclass(frozen=True)
class ReviewPage:
    rows: list[ReviewRow]
    next_before: int | None  # pass as ``before`` for the next page; None at the end
    scanned: int
    next_start: int | None = None  # "probably wrong": pass as ``start`` for the next page


def _review_queryset(*, project: Project, label: str, annotator_id: int | None,
                     disagreement: bool) -> QuerySet[Sample]:
    current = Label.objects.current().filter(sample_id=OuterRef("pk"))
    samples = Sample.objects.filter(project=project).filter(
        Q(status=Sample.Status.LABELED) | Q(label_count__gt=0)
    )
    if label:
        samples = samples.filter(Exists(current.filter(value=label)))
    if annotator_id:
        samples = samples.filter(Exists(current.filter(annotator_id=annotator_id)))
    if disagreement:
        differing = Label.objects.current().filter(sample_id=OuterRef("sample_id")).exclude(
            value=OuterRef("value")
        )
        samples = samples.filter(Exists(current.filter(Exists(differing))))
    return samples.order_by("-pk")


def review_rows_for(*, project: Project, samples: list[Sample]) -> list[ReviewRow]:
    labels: dict[int, list[Label]] = {sample.pk: [] for sample in samples}
    for label in (
        Label.objects.current().filter(sample_id__in=list(labels))
        .select_related("annotator").order_by("created_at", "id")
    ):
        labels[label.sample_id].append(label)
    suggestions = hooks.suggestions(project=project, samples=samples)
    suspicions = {row.sample_id: row for row in hooks.suspicious_labels(
        project=project, sample_ids=[sample.pk for sample in samples])}
    rows = []
    for sample in samples:
        current = labels[sample.pk]
        value = current[-1].value if current else ""
        suggestion = suggestions.get(sample.pk)
        rows.append(ReviewRow(
            sample=sample,
            value=value,
            labels=[ReviewLabel(annotator=label.annotator.get_username(), value=label.value,
                                is_correction=label.is_correction) for label in current],
            annotators_disagree=len({label.value for label in current}) > 1,
            suggestion=suggestion,
            model_disagrees=suggestion is not None and bool(value) and suggestion.label != value,
            suspicion=suspicions.get(sample.pk),
        ))
    return rows


def review_page(
    *,
    project: Project,
    user: AbstractBaseUser,
    label: str = "",
    annotator_id: int | None = None,
    disagreement: bool = False,
    model_disagreement: bool = False,
    suspicious: bool = False,
    before: int | None = None,
    start: int = 0,
) -> ReviewPage:
    """Return one page of labeled samples, newest first, for an owner or scientist.

    Filters: a current label's value, an annotator, annotators disagreeing, and the served
    model disagreeing with the sample's label. The model predicts only the rows it looks
    at: the page's rows, or with the model filter, chunks until the page is full or
    ``REVIEW_SCAN_LIMIT`` samples were looked at (the page then offers to look further).
    Pages go by sample id (``before``), so a deep page costs no OFFSET scan.

    ``suspicious``: only labels judged probably wrong (``suspicious_labels`` hook), most
    suspicious first, paged by position in that list (``start``); the other filters but the
    model's apply.
    """
    member_require(project=project, user=user, roles=SCIENCE_ROLES)
    samples = _review_queryset(project=project, label=label, annotator_id=annotator_id,
                               disagreement=disagreement)
    if suspicious:
        return _suspicious_page(project, samples, min(max(0, start), _SUSPICIOUS_START_MAX))
    if before:
        samples = samples.filter(pk__lt=before)
    if not model_disagreement:
        page = list(samples[: REVIEW_PAGE_SIZE + 1])
        more = len(page) > REVIEW_PAGE_SIZE
        page = page[:REVIEW_PAGE_SIZE]
        return ReviewPage(rows=review_rows_for(project=project, samples=page),
                          next_before=page[-1].pk if more else None, scanned=len(page))
    rows: list[ReviewRow] = []
    scanned, cursor = 0, before
    while len(rows) < REVIEW_PAGE_SIZE and scanned < REVIEW_SCAN_LIMIT:
        chunk_qs = samples if cursor is None else samples.filter(pk__lt=cursor)
        chunk = list(chunk_qs[:_REVIEW_CHUNK])
        if not chunk:
            return ReviewPage(rows=rows, next_before=None, scanned=scanned)
        for row in review_rows_for(project=project, samples=chunk):
            scanned += 1
            cursor = row.sample.pk
            if row.model_disagrees:
                rows.append(row)
                if len(rows) == REVIEW_PAGE_SIZE:
                    break
    more = samples.filter(pk__lt=cursor).exists() if cursor else False
    return ReviewPage(rows=rows, next_before=cursor if more else None, scanned=scanned)


def _suspicious_page(project: Project, samples: QuerySet[Sample], start: int) -> ReviewPage:
    rows: list[ReviewRow] = []
    position, scanned = start, 0
    while len(rows) < REVIEW_PAGE_SIZE and scanned < REVIEW_SCAN_LIMIT:
        chunk = hooks.suspicious_labels(project=project, start=position, limit=_REVIEW_CHUNK)
        if not chunk:
            return ReviewPage(rows=rows, next_before=None, scanned=scanned)
        found = {sample.pk: sample for sample in samples.filter(
            pk__in=[suspicion.sample_id for suspicion in chunk])}
        page: list[Sample] = []
        for suspicion in chunk:
            position, scanned = position + 1, scanned + 1
            if suspicion.sample_id in found:
                page.append(found[suspicion.sample_id])
                if len(rows) + len(page) == REVIEW_PAGE_SIZE:
                    break
        rows += review_rows_for(project=project, samples=page)
    more = bool(hooks.suspicious_labels(project=project, start=position, limit=1))
    return ReviewPage(rows=rows, next_before=None, scanned=scanned,
                      next_start=position if more else None)


def project_members(*, project: Project) -> list[tuple[int, str, str]]:
    """Return (user id, username, role) of the project's members, by username."""
    return list(
        Membership.objects.filter(project=project).order_by("user__username")
        .values_list("user_id", "user__username", "role")
    )


def import_job_get(*, project: Project, job_id: int) -> ImportJob | None:
    return ImportJob.objects.filter(project=project, pk=job_id).first()


def import_job_list(*, project: Project, limit: int = 10) -> QuerySet[ImportJob]:
    """Return the project's latest import jobs, newest first."""
    return ImportJob.objects.filter(project=project).select_related("user")[:limit]


CURRENT_EXPORT_FIELDS = ("sample_id", "external_id", "split", "label", "annotator", "labeled_at")
HISTORY_EXPORT_FIELDS = ("label_id", "sample_id", "external_id", "split", "label", "annotator",
                         "created_at", "superseded_at", "duration_ms", "served_version",
                         "suggested_version")


def label_export_rows(*, project: Project, history: bool = False) -> Iterator[dict]:
    """Yield the project's labels as flat dicts, streaming from the database in chunks.

    Current: one row per labeled sample, its most recent current label. History: every
    label ever given, superseded ones included, in the order they were given per sample,
    with the model versions it was given under (served, and whose suggestion was shown).
    """
    labels = Label.objects.filter(sample__project=project)
    if not history:
        labels = labels.filter(superseded_at__isnull=True).order_by("sample_id", "-created_at", "-id")
    else:
        labels = labels.order_by("sample_id", "created_at", "id")
    values = labels.values_list(
        "id", "sample_id", "sample__external_id", "sample__split", "value",
        "annotator__username", "created_at", "superseded_at", "duration_ms", "served_version",
        "suggested_version",
    ).iterator(chunk_size=EXPORT_CHUNK)
    previous = None
    for (label_id, sample_id, external_id, split, value, annotator, created_at, superseded_at,
         duration_ms, served_version, suggested_version) in values:
        if history:
            yield {"label_id": label_id, "sample_id": sample_id, "external_id": external_id,
                   "split": split, "label": value, "annotator": annotator,
                   "created_at": created_at, "superseded_at": superseded_at,
                   "duration_ms": duration_ms, "served_version": served_version,
                   "suggested_version": suggested_version}
            continue
        if sample_id == previous:
            continue
        previous = sample_id
        yield {"sample_id": sample_id, "external_id": external_id, "split": split,
               "label": value, "annotator": annotator, "labeled_at": created_at}


def label_export_chunks(*, project: Project, history: bool, fmt: str) -> Iterator[str]:
    """Yield the project's labels as CSV or JSONL text, in chunks, for streaming."""
    fields = HISTORY_EXPORT_FIELDS if history else CURRENT_EXPORT_FIELDS
    return export_chunks(label_export_rows(project=project, history=history), fields, fmt)
