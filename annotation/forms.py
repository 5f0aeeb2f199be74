"""Forms of the project, import and labeling pages."""
from __future__ import annotations

from django import forms

from annotation import label_limits
from annotation.errors import InvalidLabel
from annotation.models import Project
from annotation.services import ledger


class LabelForm(forms.Form):
    sample = forms.IntegerField(min_value=label_limits.SAMPLE_ID_MIN,
                                max_value=label_limits.SAMPLE_ID_MAX)
    value = forms.CharField(max_length=label_limits.VALUE_MAX_LENGTH)
    duration_ms = forms.IntegerField(min_value=label_limits.DURATION_MS_MIN,
                                     max_value=label_limits.DURATION_MS_MAX, required=False)
    # The version whose suggestion the card showed: the suggestion partial's hidden input,
    # absent when none was shown (or before it loaded).
    suggested_version = forms.IntegerField(min_value=label_limits.VERSION_MIN,
                                           max_value=label_limits.VERSION_MAX, required=False)

    def __init__(self, *args, project: Project, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.project = project

    def clean_value(self) -> str:
        value = self.cleaned_data["value"]
        try:
            ledger.label_check(project=self.project, value=value)  # the one check and message
        except InvalidLabel as exc:
            raise forms.ValidationError(exc.message, code=exc.code) from exc
        return value


class ReviewFilterForm(forms.Form):
    label = forms.ChoiceField(required=False)
    annotator = forms.TypedChoiceField(required=False, coerce=int, empty_value=None)
    disagreement = forms.BooleanField(required=False, label="Annotators disagree")
    model = forms.BooleanField(required=False, label="Model disagrees")

    def __init__(self, *args, project: Project, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        from annotation.selectors import project_members

        self.fields["label"].choices = [("", "any label")] + [(v, v) for v in project.labels]
        self.fields["annotator"].choices = [("", "anyone")] + [
            (user_id, username) for user_id, username, _role in project_members(project=project)
        ]

    def filters(self) -> dict:
        data = self.cleaned_data
        return {"label": data.get("label") or "", "annotator_id": data.get("annotator"),
                "disagreement": bool(data.get("disagreement")),
                "model_disagreement": bool(data.get("model"))}


class ProjectSettingsForm(forms.Form):
    overlap = forms.IntegerField(min_value=1, max_value=20,
                                 help_text="How many different annotators label each sample.")
    keys = forms.CharField(max_length=200, required=False,
                           help_text="One key per label, in label order, e.g. 'asdf'. "
                                     "Empty: 1-9 (or the labels themselves when one character).")
    show_suggestion = forms.BooleanField(required=False, label="Show the model's suggestion",
                                         help_text="Hide it to avoid anchoring annotators.")
    batch_size = forms.IntegerField(min_value=1, max_value=100_000,
                                    help_text="Retrain after this many new labels.")

    def __init__(self, *args, project: Project, **kwargs) -> None:
        kwargs.setdefault("initial", {
            "overlap": project.overlap, "keys": "".join(project.keys),
            "show_suggestion": project.show_suggestion, "batch_size": project.batch_size,
        })
        super().__init__(*args, **kwargs)

    def clean_keys(self) -> list[str]:
        return list(self.cleaned_data["keys"].replace(" ", "").replace(",", ""))


class ProjectCreateForm(forms.Form):
    name = forms.CharField(max_length=200)
    slug = forms.SlugField(max_length=100, help_text="Used in URLs and commands.")
    kind = forms.ChoiceField(choices=Project.Kind.choices)
    labels = forms.CharField(max_length=5000, help_text="Comma-separated, at least two.")
    batch_size = forms.IntegerField(min_value=1, max_value=100_000, initial=20,
                                    help_text="Retrain after this many new labels.")
    test_fraction = forms.FloatField(min_value=0.0, max_value=0.9, initial=0.2,
                                     help_text="Share of samples held out for evaluation.")

    def clean_slug(self) -> str:
        slug = self.cleaned_data["slug"]
        if slug == "new":
            raise forms.ValidationError("'new' is reserved")
        if Project.objects.filter(slug=slug).exists():
            raise forms.ValidationError(f"a project {slug!r} exists already")
        return slug

    def clean_labels(self) -> list[str]:
        labels = [label.strip() for label in self.cleaned_data["labels"].split(",") if label.strip()]
        if len(labels) < 2:
            raise forms.ValidationError("give at least two labels, separated by commas")
        if len(set(labels)) != len(labels):
            raise forms.ValidationError("the labels must be distinct")
        if any(len(label) > 200 for label in labels):
            raise forms.ValidationError("a label has at most 200 characters")
        return labels


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    """Several files in one field (Django's documented recipe)."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("widget", MultipleFileInput())
        super().__init__(*args, **kwargs)

    def clean(self, data, initial=None):
        single = super().clean
        if isinstance(data, (list, tuple)):
            return [single(d, initial) for d in data]
        return [single(data, initial)] if data else []


class ImportForm(forms.Form):
    files = MultipleFileField(
        required=True,
        help_text="A .csv or .jsonl file (text, tabular), or a .zip or image files (image).",
    )
    text_column = forms.CharField(max_length=200, required=False, help_text="Default: text")
    id_column = forms.CharField(max_length=200, required=False, help_text="Default: external_id")
    label_column = forms.CharField(max_length=200, required=False, help_text="Default: label")
    labels_from_folders = forms.BooleanField(
        required=False, help_text="Images in a .zip: the folder names the existing label.")

    def options(self) -> dict:
        return {key: self.cleaned_data[key] for key in
                ("text_column", "id_column", "label_column", "labels_from_folders")}
