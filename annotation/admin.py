"""Admin registrations for inspecting projects, samples and labels."""
from django.contrib import admin

from annotation.models import ImportJob, Label, Membership, Project, Sample


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ["slug", "name", "kind", "batch_size", "query_strategy"]


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["project", "user", "role"]


@admin.register(Sample)
class SampleAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "split", "status", "score", "leased_by"]
    list_filter = ["project", "split", "status"]
    raw_id_fields = ["leased_by"]


@admin.register(Label)
class LabelAdmin(admin.ModelAdmin):
    list_display = ["id", "sample", "annotator", "value", "created_at", "superseded_at"]
    raw_id_fields = ["sample"]


@admin.register(ImportJob)
class ImportJobAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "user", "format", "status", "rows_ok", "rows_bad", "created_at"]
    list_filter = ["status", "format"]
    readonly_fields = ["report"]
