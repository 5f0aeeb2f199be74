"""Show or change a project's settings as the operator; each change is recorded."""
from django.core.management.base import BaseCommand, CommandError

from annotation.forms import ProjectSettingsForm
from annotation.management.settings_options import (
    form_errors_message,
    learning_arguments_add,
    learning_options,
)
from annotation.models import Project
from annotation.project_limits import ESTIMATOR_PARAMS
from annotation.selectors import project_settings_history
from annotation.services import project_settings_set
from core.errors import DomainError


class Command(BaseCommand):
    help = ("Show a project's settings and their recent changes, or change them: "
            "project_settings <slug> [--batch-size N] [--strategy S] [--model M "
            "[--C x | --n-estimators n]] [--promotion best|latest] [--test-fraction f]. "
            "A new model, strategy or promotion policy is used from the next retrain on.")

    def add_arguments(self, parser):
        parser.add_argument("slug")
        learning_arguments_add(parser)

    def handle(self, *args, slug, **options):
        project = Project.objects.filter(slug=slug).first()
        if project is None:
            raise CommandError(f"no project {slug!r}")
        given = learning_options(options)
        if given:
            self._change(project, given)
        self._show(project)

    def _change(self, project: Project, given: dict) -> None:
        data = ProjectSettingsForm.initial_for(project)
        if given.get("estimator", project.estimator) != project.estimator:
            # Another model starts from its own defaults, as in the service.
            data.update({param: None for param in ESTIMATOR_PARAMS})
        data.update(given)
        form = ProjectSettingsForm({k: "" if v is None else v for k, v in data.items()},
                                   project=project)
        if not form.is_valid():
            raise CommandError(form_errors_message(form))
        before = project.settings_changes.order_by("-pk").values_list("pk", flat=True).first()
        try:
            project_settings_set(project=project, **form.cleaned_data)
        except DomainError as exc:
            raise CommandError(exc.message) from None
        changes = project.settings_changes.filter(pk__gt=before or 0).order_by("pk")
        for change in changes:
            self.stdout.write(f"changed {change.get_field_display()}: "
                              f"{change.old_value or 'default'} -> {change.new_value or 'default'}")
        if not changes:
            self.stdout.write("nothing changed")

    def _show(self, project: Project) -> None:
        for field, value in ProjectSettingsForm.initial_for(project).items():
            self.stdout.write(f"{field}: {'default' if value in (None, '') else value}")
        history = project_settings_history(project=project, limit=10)
        if history:
            self.stdout.write("recent changes, newest first:")
        for change in history:
            who = change.user.get_username() if change.user else "command line"
            self.stdout.write(f"  {change.changed_at:%Y-%m-%d %H:%M} {who}: "
                              f"{change.get_field_display()} {change.old_value or 'default'} "
                              f"-> {change.new_value or 'default'}")
