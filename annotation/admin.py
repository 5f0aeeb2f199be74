"""Admin registrations for inspecting projects, samples, labels and tokens."""
from django.contrib import admin

from annotation.models import (
    ApiToken,
    ImportJob,
    Label,
    Lease,
    Membership,
    Project,
    ProjectSettingsChange,
    Sample,
)


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ["slug", "name", "kind", "batch_size", "overlap", "query_strategy", "promotion",
                    "test_fraction"]


@admin.register(ProjectSettingsChange)
class ProjectSettingsChangeAdmin(admin.ModelAdmin):
    """The settings history, read only: rows are written by the settings services alone."""

    list_display = ["changed_at", "project", "user", "field", "old_value", "new_value"]
    list_filter = ["field", "project"]
    list_select_related = ["project", "user"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["project", "user", "role"]


@admin.register(Sample)
class SampleAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "split", "status", "label_count", "score"]
    list_filter = ["project", "split", "status"]


@admin.register(Lease)
class LeaseAdmin(admin.ModelAdmin):
    list_display = ["id", "sample", "annotator", "expires_at", "skipped"]
    raw_id_fields = ["sample", "annotator"]


@admin.register(Label)
class LabelAdmin(admin.ModelAdmin):
    list_display = ["id", "sample", "annotator", "value", "is_correction", "created_at",
                    "superseded_at"]
    raw_id_fields = ["sample"]


@admin.register(ImportJob)
class ImportJobAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "user", "format", "status", "rows_ok", "rows_bad", "created_at"]
    list_filter = ["status", "format"]
    readonly_fields = ["report"]


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ["project", "name", "key_prefix", "scopes", "last_used_at", "revoked_at"]
    exclude = ["key_hash"]
