"""Forms of the labeling pages."""
from __future__ import annotations

from django import forms

from annotation.models import Project


class LabelForm(forms.Form):
    sample = forms.IntegerField(min_value=1)
    value = forms.CharField(max_length=200)
    duration_ms = forms.IntegerField(min_value=0, max_value=86_400_000, required=False)

    def __init__(self, *args, project: Project, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.project = project

    def clean_value(self) -> str:
        value = self.cleaned_data["value"]
        if value not in self.project.labels:
            raise forms.ValidationError(f"{value!r} is not one of this project's labels")
        return value
