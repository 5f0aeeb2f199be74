"""The data API of a project: import samples, follow an import, export labels."""
from __future__ import annotations

from django.conf import settings
from django.http import StreamingHttpResponse
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.authentication import SessionAuthentication
from rest_framework.exceptions import NotFound
from rest_framework.parsers import FileUploadParser, FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation.errors import InvalidImport
from annotation.models import ImportJob
from annotation.permissions import PROJECT_NOT_FOUND_EXAMPLE, CanManageProjectData
from annotation.selectors import import_job_get
from annotation.services import import_job_create, import_job_start
from annotation.views import export_response
from core.api_docs import THROTTLED, error_examples, error_responses
from core.api_errors import RequestTooLarge
from core.errors import error_body
from annotation.authentication import ProjectTokenAuthentication
from core.throttling import TokenScopedRateThrottle

AUTHENTICATION = [ProjectTokenAuthentication, SessionAuthentication]
# The schema documents the token; a signed-in owner or scientist's session works as well.
SCHEMA_AUTH = [{"ProjectToken": []}]
_ERRORS = {
    "401": ("Bad token", "authentication_failed", "invalid or revoked token", None),
    "403": ("Missing scope", "permission_denied", "this token lacks the 'admin' scope", None),
    "404": PROJECT_NOT_FOUND_EXAMPLE,
    "429": THROTTLED,
}
_JOB_EXAMPLE = {
    "id": 7, "url": "/api/v1/projects/news/imports/7", "status": "done", "phase": "writing",
    "format": "csv", "original_name": "news.csv", "rows_total": 2, "rows_done": 2,
    "rows_ok": 2, "rows_bad": 0, "bytes_total": 61, "bytes_done": 61,
    "report": {"message": "imported 2 sample(s), 1 with a label", "errors": [],
               "truncated": False},
    "created_at": "2026-11-21T20:00:00Z", "finished_at": "2026-11-21T20:00:01Z",
}


class ImportJobOutputSerializer(serializers.ModelSerializer):
    url = serializers.SerializerMethodField()

    class Meta:
        model = ImportJob
        fields = ["id", "url", "status", "phase", "format", "original_name", "rows_total",
                  "rows_done", "rows_ok", "rows_bad", "bytes_total", "bytes_done", "report",
                  "created_at", "finished_at"]

    def get_url(self, job: ImportJob) -> str:
        return reverse("api-import-job", args=[job.project.slug, job.pk])


class RawFileParser(FileUploadParser):
    """The whole body is the file (``curl --data-binary @reviews.csv``), named by
    ``Content-Disposition: attachment; filename="reviews.csv"`` or ``?filename=reviews.csv``.

    Like a multipart upload it goes through Django's upload handlers, so past
    ``FILE_UPLOAD_MAX_MEMORY_SIZE`` it streams to a temporary file, never whole into memory.
    """

    errors = {
        **FileUploadParser.errors,
        "no_filename": "name the uploaded file: send 'Content-Disposition: attachment; "
                       "filename=\"samples.csv\"' or '?filename=samples.csv' with a raw body, "
                       "or multipart/form-data with a 'file' field",
    }

    def get_filename(self, stream, media_type, parser_context):
        name = super().get_filename(stream, media_type, parser_context)
        if not name:
            name = parser_context["request"].query_params.get("filename")
        return name


def _import_input(request: Request) -> dict:
    """The import's fields as a plain dict, the uploaded files as they are.

    Never ``request.data.copy()``: a QueryDict's copy deep-copies every uploaded file, and
    a file Django spooled to disk (any upload over FILE_UPLOAD_MAX_MEMORY_SIZE, 2.5 MB)
    cannot be copied. With a raw body the options come from the query string.
    """
    data = request.data
    if not hasattr(data, "getlist"):  # a raw body: {"file": <upload>}
        options = {key: value for key, value in request.query_params.items() if key != "file"}
        return {**options, **data}
    values = {key: data.get(key) for key in data.keys() if key != "files"}
    if "files" in data:
        values["files"] = data.getlist("files")
    return values


class SampleImportApi(APIView):
    """Import samples from one uploaded file (.csv, .jsonl, .zip) or several image files.

    Send the file as multipart/form-data (``file``, or several image ``files``) or as the
    whole body, named by ``Content-Disposition`` or ``?filename=`` (options then go in the
    query string). Uploads stream to storage whatever their size. Files up to
    ``IMPORT_INLINE_MAX_BYTES`` are imported before the response: 201 when done, 400 with
    the report when refused. Larger ones answer 202 with the job to poll at its ``url``.
    """

    authentication_classes = AUTHENTICATION
    permission_classes = [CanManageProjectData]
    throttle_classes = [TokenScopedRateThrottle]
    throttle_scope = "admin"
    parser_classes = [MultiPartParser, FormParser, RawFileParser]

    def initial(self, request: Request, *args, **kwargs) -> None:
        """After the access checks, refuse a body over the upload limit before reading it."""
        super().initial(request, *args, **kwargs)
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        # A multipart body carries a little more than its files.
        limit = settings.IMPORT_MAX_UPLOAD_BYTES + 1024 * 1024
        if length > limit:
            raise RequestTooLarge(
                f"request body of {length} bytes is over the import limit of {limit} bytes",
                limits={"content_length": length, "max_body_bytes": limit},
            )

    class InputSerializer(serializers.Serializer):
        file = serializers.FileField(required=False)
        files = serializers.ListField(child=serializers.FileField(), required=False)
        text_column = serializers.CharField(max_length=200, required=False)
        id_column = serializers.CharField(max_length=200, required=False)
        label_column = serializers.CharField(max_length=200, required=False)
        labels_from_folders = serializers.BooleanField(required=False, default=False)

        def validate(self, data: dict) -> dict:
            if not data.get("file") and not data.get("files"):
                raise serializers.ValidationError("send a 'file' (or several image 'files')")
            return data

    @extend_schema(
        operation_id="samples_import",
        auth=SCHEMA_AUTH,
        request={"multipart/form-data": InputSerializer,
                 "application/octet-stream": OpenApiTypes.BINARY},
        parameters=[OpenApiParameter("filename", str, required=False, description=(
            "With a raw body: the file's name (or send Content-Disposition); the other "
            "options (text_column, id_column, label_column, labels_from_folders) may be "
            "query parameters too."))],
        responses={201: ImportJobOutputSerializer, 202: ImportJobOutputSerializer,
                   **error_responses(400, 401, 403, 404, 413, 429)},
        examples=[
            OpenApiExample("A CSV file", request_only=True, media_type="multipart/form-data",
                           value={"file": "news.csv", "text_column": "text"}),
            OpenApiExample("A raw body", request_only=True,
                           media_type="application/octet-stream",
                           value="external_id,text,label\nn-1,Stocks rally,pos\n"),
            OpenApiExample("Imported", response_only=True, status_codes=["201"],
                           value=_JOB_EXAMPLE),
            OpenApiExample("Queued", response_only=True, status_codes=["202"],
                           value={**_JOB_EXAMPLE, "status": "queued", "phase": "",
                                  "rows_done": 0, "rows_ok": 0, "bytes_done": 0,
                                  "report": {}, "finished_at": None}),
            *error_examples({
                "400": ("Bad rows", "invalid_import", "refused: 1 bad row(s); nothing was imported",
                        {**_JOB_EXAMPLE, "status": "failed", "rows_ok": 1, "rows_bad": 1,
                         "report": {"message": "refused: 1 bad row(s); nothing was imported",
                                    "errors": [{"row": 2, "line": 3,
                                                "error": "unknown label 'cat'"}],
                                    "truncated": False}}),
                "413": ("Too large", "too_large", "request body of 3221225472 bytes is over the import "
                        "limit of 2148532224 bytes",
                        {"content_length": 3221225472, "max_body_bytes": 2148532224}),
                **_ERRORS,
            }),
        ],
    )
    def post(self, request: Request, slug: str) -> Response:
        data = _import_input(request)
        try:
            serializer = self.InputSerializer(data=data)
            serializer.is_valid(raise_exception=True)
            values = serializer.validated_data
            options = {key: values[key] for key in ("text_column", "id_column", "label_column",
                                                    "labels_from_folders") if key in values}
            job = import_job_create(project=self.project, user=self.acting_user,
                                    upload=values.get("file"),
                                    image_files=values.get("files") or (), options=options)
        finally:  # storage moved or copied them; Django closes only multipart uploads
            for upload in [data.get("file"), *(data.get("files") or ())]:
                if hasattr(upload, "close"):
                    upload.close()
        job = import_job_start(job=job)
        body = ImportJobOutputSerializer(job).data
        if job.status == ImportJob.Status.FAILED:
            return Response(error_body(job.report.get("message", "the import failed"),
                                       InvalidImport.code, body),
                            status=status.HTTP_400_BAD_REQUEST)
        code = status.HTTP_201_CREATED if job.status == ImportJob.Status.DONE else status.HTTP_202_ACCEPTED
        return Response(body, status=code, headers={"Location": body["url"]})


class ImportJobDetailApi(APIView):
    """Progress and report of one import job."""

    authentication_classes = AUTHENTICATION
    permission_classes = [CanManageProjectData]
    throttle_classes = [TokenScopedRateThrottle]
    throttle_scope = "read"

    @extend_schema(
        operation_id="imports_retrieve",
        auth=SCHEMA_AUTH,
        responses={200: ImportJobOutputSerializer, **error_responses(401, 403, 404, 429)},
        examples=[
            OpenApiExample("Running", response_only=True, status_codes=["200"],
                           value={**_JOB_EXAMPLE, "status": "running", "phase": "checking",
                                  "rows_total": None, "rows_done": 1, "bytes_done": 30,
                                  "report": {}, "finished_at": None}),
            *error_examples({**_ERRORS, "404": ("Unknown import", "not_found", "no such import", None)}),
        ],
    )
    def get(self, request: Request, slug: str, job_id: int) -> Response:
        job = import_job_get(project=self.project, job_id=job_id)
        if job is None:
            raise NotFound("no such import")
        return Response(ImportJobOutputSerializer(job).data)


class LabelExportApi(APIView):
    """Stream the project's labels as CSV or JSONL: current ones, or every one with ?history=1."""

    authentication_classes = AUTHENTICATION
    permission_classes = [CanManageProjectData]
    throttle_classes = [TokenScopedRateThrottle]
    throttle_scope = "export"

    def perform_content_negotiation(self, request, force=False):
        # The body is CSV or JSONL whatever the Accept header says; errors stay JSON.
        return super().perform_content_negotiation(request, force=True)

    # Left out of the schema for now: its body is CSV or JSONL, and the schema tests ask
    # every documented response for an application/json example.
    @extend_schema(
        exclude=True,
        parameters=[OpenApiParameter("history", bool, description="every label, superseded too")],
    )
    def get(self, request: Request, slug: str, fmt: str) -> StreamingHttpResponse:
        history = request.query_params.get("history", "").lower() in ("1", "true", "yes")
        return export_response(project=self.project, history=history, fmt=fmt)

