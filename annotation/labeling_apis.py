"""The labeling API: lease the next sample, submit a label, fetch a sample's image.

For scripts and labeling tools: ``Authorization: Token <personal key>`` (``create_user
--token``) or a signed-in session. Errors are ``{"error", "code", "detail"}``.
"""
from __future__ import annotations

from django.core.files.storage import default_storage
from django.http import FileResponse
from django.urls import reverse
from drf_spectacular.utils import OpenApiExample, extend_schema, extend_schema_serializer
from rest_framework import serializers, status
from rest_framework.authentication import SessionAuthentication
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation import label_limits
from annotation.models import Label, Sample
from annotation.permissions import PROJECT_NOT_FOUND_EXAMPLE, CanLabelProject
from annotation.services import label_submit, sample_lease_next
from core.api_docs import THROTTLED, TOO_LARGE, error_examples, error_responses
from core.fast_json import (
    FirstRendererNegotiation,
    OrjsonParser,
    OrjsonRenderer,
    ReusedPartsMixin,
)
from core.remembered import RememberedTokenMixin
from core.request_limits import BodySizeLimitMixin
from annotation.authentication import ProjectTokenAuthentication
from core.throttling import TokenScopedRateThrottle

AUTHENTICATION = [ProjectTokenAuthentication, SessionAuthentication]
SCHEMA_AUTH = [{"ProjectToken": []}]
_ERRORS = {
    "401": ("Bad token", "authentication_failed", "invalid or revoked token", None),
    "403": ("Not a member", "permission_denied",
            "you have no owner/scientist/annotator role in project 'digits'", None),
    "404": PROJECT_NOT_FOUND_EXAMPLE,
    "429": THROTTLED,
}


class SampleOutputSerializer(serializers.ModelSerializer):
    kind = serializers.CharField(source="project.kind")
    image_url = serializers.SerializerMethodField()
    lease_expires = serializers.SerializerMethodField()
    labels = serializers.ListField(source="project.labels", child=serializers.CharField())

    class Meta:
        model = Sample
        fields = ["id", "external_id", "kind", "split", "origin", "text", "values", "image_url",
                  "lease_expires", "labels"]

    def get_image_url(self, sample: Sample) -> str | None:
        if not sample.image:
            return None
        return reverse("api-sample-image", args=[sample.project.slug, sample.pk])

    def get_lease_expires(self, sample: Sample) -> str | None:
        expires = self.context.get("lease_expires")
        return serializers.DateTimeField().to_representation(expires) if expires else None


class NextSampleOutputSerializer(serializers.Serializer):
    sample = SampleOutputSerializer(allow_null=True)


_datetime = serializers.DateTimeField()


def sample_output(sample: Sample, lease_expires) -> dict:
    """What ``SampleOutputSerializer`` gives, built directly: this answers every hand-out,
    and a ModelSerializer rebuilds its fields from the model on each instantiation."""
    project = sample.project
    return {
        "id": sample.pk,
        "external_id": sample.external_id,
        "kind": project.kind,
        "split": sample.split,
        "origin": sample.origin,
        "text": sample.text,
        "values": sample.values,
        "image_url": (reverse("api-sample-image", args=[project.slug, sample.pk])
                      if sample.image else None),
        "lease_expires": _datetime.to_representation(lease_expires) if lease_expires else None,
        "labels": [str(label) for label in project.labels],
    }


def label_output(label: Label) -> dict:
    """``LabelSubmitApi.OutputSerializer``'s shape, built directly (it documents the schema)."""
    return {
        "id": label.pk, "sample": label.sample_id, "value": label.value,
        "annotator": label.annotator.username, "duration_ms": label.duration_ms,
        "created_at": _datetime.to_representation(label.created_at),
        "served_version": label.served_version, "suggested_version": label.suggested_version,
    }


class _LabelingApi(RememberedTokenMixin, ReusedPartsMixin, BodySizeLimitMixin, APIView):
    """What the labeling endpoints share; ``next`` and ``labels`` answer every label given,
    so they take the predict API's shortcuts: the token check remembered for a second per
    process, orjson in and out, no Accept parsing, parsers and renderers built once. A body
    over ``API_MAX_BODY_BYTES`` is refused with 413 unread, as on the other APIs."""

    authentication_classes = AUTHENTICATION
    permission_classes = [CanLabelProject]
    throttle_classes = [TokenScopedRateThrottle]
    throttle_scope = "read"
    parser_classes = [OrjsonParser]
    renderer_classes = [OrjsonRenderer]
    content_negotiation_class = FirstRendererNegotiation


class NextSampleApi(_LabelingApi):
    """Lease the next sample to the caller: ``{"sample": {...}}``, or ``{"sample": null}``
    when nothing is left for them.

    Asking again before labeling returns the same sample (the lease is renewed only by
    labeling it). The lease lasts ``LEASE_SECONDS`` (default 10 minutes).
    """

    @extend_schema(
        operation_id="samples_next",
        auth=SCHEMA_AUTH,
        responses={200: NextSampleOutputSerializer, **error_responses(401, 403, 404, 429)},
        examples=[
            OpenApiExample("A text sample", response_only=True, status_codes=["200"], value={
                "sample": {
                    "id": 42, "external_id": "n-17", "kind": "text", "split": "pool",
                    "origin": "import", "text": "Stocks rally as ...", "values": None,
                    "image_url": None,
                    "lease_expires": "2026-11-21T20:10:00Z", "labels": ["pos", "neg"],
                }}),
            OpenApiExample("Nothing left", response_only=True, status_codes=["200"],
                           value={"sample": None}),
            *error_examples(_ERRORS),
        ],
    )
    def get(self, request: Request, slug: str) -> Response:
        sample = sample_lease_next(project=self.project, annotator=self.annotator,
                                   membership=self.membership)
        if sample is None:
            return Response({"sample": None})
        sample.project = self.project
        return Response({"sample": sample_output(sample, sample.lease_expires)})


class LabelSubmitApi(_LabelingApi):
    """Label a sample as the caller: 201 when recorded, 200 when the same label was there.

    A label is accepted while the caller's lease is live, and also after it expired as
    long as nobody else took the sample (409 once it was leased to someone else). 400 for
    a value outside the project's labels, 404 for a sample outside the project.

    ``suggested_version``: the number of the model version whose suggestion the tool showed
    for this sample (from ``predict``'s ``model_version``), null or absent when it showed
    none. It is recorded as given, not checked against the project's versions; a held-out
    test sample records null whatever it says (the labeling page shows none there). The
    label also records ``served_version``, the version the project served as it was
    written. A repeat keeps what the first submit recorded.
    """

    @extend_schema_serializer(component_name="LabelSubmitInput")
    class InputSerializer(serializers.Serializer):
        # The fast path (annotation.labeling_fast_path) derives its checks from these fields.
        sample = serializers.IntegerField(min_value=label_limits.SAMPLE_ID_MIN,
                                          max_value=label_limits.SAMPLE_ID_MAX)
        value = serializers.CharField(max_length=label_limits.VALUE_MAX_LENGTH)
        duration_ms = serializers.IntegerField(min_value=label_limits.DURATION_MS_MIN,
                                               max_value=label_limits.DURATION_MS_MAX,
                                               required=False)
        suggested_version = serializers.IntegerField(min_value=label_limits.VERSION_MIN,
                                                     max_value=label_limits.VERSION_MAX,
                                                     required=False, allow_null=True)

    @extend_schema_serializer(component_name="LabelOutput")
    class OutputSerializer(serializers.ModelSerializer):
        annotator = serializers.CharField(source="annotator.username")

        class Meta:
            model = Label
            fields = ["id", "sample", "value", "annotator", "duration_ms", "created_at",
                      "served_version", "suggested_version"]

    @extend_schema(
        operation_id="labels_create",
        auth=SCHEMA_AUTH,
        request=InputSerializer,
        responses={201: OutputSerializer, 200: OutputSerializer,
                   **error_responses(400, 401, 403, 404, 409, 413, 429)},
        examples=[
            OpenApiExample("A label", request_only=True, value={"sample": 42, "value": "pos"}),
            OpenApiExample("A label given with model v3's suggestion shown", request_only=True,
                           value={"sample": 42, "value": "pos", "duration_ms": 1200,
                                  "suggested_version": 3}),
            OpenApiExample("Recorded", response_only=True, status_codes=["201", "200"], value={
                "id": 7, "sample": 42, "value": "pos", "annotator": "ann",
                "duration_ms": None, "created_at": "2026-11-21T20:01:00Z",
                "served_version": 3, "suggested_version": None}),
            *error_examples({
                "400": ("Unknown label", "invalid_label", "'cat' is not a label of project 'news'",
                        ["pos", "neg"]),
                "409": ("Leased by someone else", "sample_not_available",
                        "this sample is leased by another annotator", {"sample": 42}),
                "413": TOO_LARGE,
                **_ERRORS,
                "404": ("Outside the project", "not_found",
                        "that sample is not part of this project", {"sample": 42}),
            }),
        ],
    )
    def post(self, request: Request, slug: str) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        # label_submit loads and locks the row itself and answers SampleNotFound (404) for a
        # sample outside the project: no separate look-up here.
        sample = Sample(pk=data["sample"], project=self.project)
        label = label_submit(sample=sample, annotator=self.annotator, value=data["value"],
                             duration_ms=data.get("duration_ms"),
                             suggested_version=data.get("suggested_version"),
                             membership=self.membership)
        code = status.HTTP_201_CREATED if label.is_new else status.HTTP_200_OK
        return Response(label_output(label), status=code)


class SampleImageApi(APIView):
    """The image file of one sample of the project, for members."""

    authentication_classes = AUTHENTICATION
    permission_classes = [CanLabelProject]
    throttle_classes = [TokenScopedRateThrottle]
    throttle_scope = "read"

    @extend_schema(exclude=True)
    def get(self, request: Request, slug: str, sample_id: int) -> FileResponse:
        sample = Sample.objects.filter(pk=sample_id, project=self.project).exclude(image="").first()
        if sample is None:
            raise NotFound("no such image")
        response = FileResponse(default_storage.open(sample.image.name, "rb"))
        response["Cache-Control"] = "private, max-age=3600"
        return response
