"""Forms of the project, import and labeling pages."""
from __future__ import annotations

from django import forms

from annotation import hooks, label_limits
from annotation import project_limits as limits
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
    suspicious = forms.BooleanField(required=False, label="Probably wrong")

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
                "model_disagreement": bool(data.get("model")),
                "suspicious": bool(data.get("suspicious"))}


def _optional_choice(choices, initial: str, label: str, help_text: str) -> forms.Field:
    """A choice that a request may leave out (a browser sends every select): the default
    for a new project, unchanged in Settings."""
    return forms.TypedChoiceField(choices=choices.choices, initial=initial, required=False,
                                  empty_value=None, label=label, help_text=help_text)


class LearningSettingsForm(forms.Form):
    """The settings of how a project learns, shared by the New project and Settings forms.

    ``cleaned_data`` holds the keyword arguments of the project services: the estimator's
    parameters are gathered in ``model_params`` (left empty: the estimator's default).
    """

    batch_size = forms.IntegerField(min_value=limits.BATCH_SIZE_MIN, max_value=limits.BATCH_SIZE_MAX,
                                    initial=20, help_text="Retrain after this many new labels.")
    query_strategy = _optional_choice(
        Project.Strategy, Project.Strategy.DEFAULT, "Query strategy",
        "Which unlabeled samples the queue asks first. 'default': diverse uncertain "
        "samples and random ones, in a mix that shifts toward whichever measurably helps "
        "this project's model more (the project page shows why).")
    estimator = _optional_choice(
        Project.Estimator, Project.DEFAULT_ESTIMATOR, "Model",
        "Every model trains on images and tabular rows; texts: all but histogram "
        "gradient boosting.")
    C = forms.FloatField(
        required=False, min_value=limits.C_MIN, max_value=limits.C_MAX, label="C",
        help_text="Logistic regression and linear SVM only: inverse regularization strength; "
                  f"smaller is simpler. Empty: {limits.ESTIMATOR_PARAM_DEFAULTS['C']:g}.")
    n_estimators = forms.IntegerField(
        required=False, min_value=limits.N_ESTIMATORS_MIN, max_value=limits.N_ESTIMATORS_MAX,
        label="Trees", help_text="Random forest only: number of trees. "
                                 f"Empty: {limits.ESTIMATOR_PARAM_DEFAULTS['n_estimators']}.")
    featurizer = forms.TypedChoiceField(
        choices=[("", "the kind's default"), *limits.FEATURIZER_CHOICES], required=False,
        empty_value=None, label="Featurizer",
        help_text="How samples become features. Images: pixels, or a pretrained CNN's "
                  "features; texts: TF-IDF, or MiniLM sentence embeddings. The pretrained "
                  "ones need `make featurizers` on every machine. Empty: unchanged (new "
                  "project: the kind's default).")
    promotion = _optional_choice(
        Project.Promotion, Project.Promotion.BEST, "Promotion policy",
        "Which trained version is served: one that beats the served model's macro-F1 on the "
        "test split, or every new one.")
    test_fraction = forms.FloatField(
        initial=0.2, label="Test fraction",
        widget=forms.NumberInput(attrs={"min": limits.TEST_FRACTION_MIN,
                                        "max": limits.TEST_FRACTION_MAX, "step": 0.05}),
        help_text=f"Share of samples held out to evaluate models, {limits.TEST_FRACTION_MIN:g} "
                  f"to {limits.TEST_FRACTION_MAX:g}. Each sample draws its split once, on import.")

    # A project made in code may hold out a fraction outside the limits; it may keep it.
    kept_test_fraction: float | None = None
    # The model trained when none is chosen: the default, or the project's in Settings.
    current_estimator: str = Project.DEFAULT_ESTIMATOR
    # The featurizer the project has (None: a new project), checked only when it changes.
    current_featurizer: str | None = None

    def project_kind(self) -> str | None:
        """The kind of the project's samples (None while it is not known)."""
        return None

    def clean_test_fraction(self) -> float | None:
        value = self.cleaned_data["test_fraction"]
        if value is not None and value != self.kept_test_fraction and not (
                limits.TEST_FRACTION_MIN <= value <= limits.TEST_FRACTION_MAX):
            raise forms.ValidationError(f"give a fraction between {limits.TEST_FRACTION_MIN:g} "
                                        f"and {limits.TEST_FRACTION_MAX:g}")
        return value

    def clean(self) -> dict:
        data = super().clean()
        estimator = data.get("estimator") or self.current_estimator
        kind = self.project_kind()
        if data.get("estimator") and kind:
            reason = limits.estimator_unfit_reason(estimator=estimator, kind=kind)
            if reason:
                self.add_error("estimator", reason)
        featurizer = data.get("featurizer")
        if featurizer and kind and featurizer != self.current_featurizer:
            reason = (limits.featurizer_unfit_reason(featurizer=featurizer, kind=kind)
                      or hooks.featurizer_unavailable(featurizer=featurizer))
            if reason:
                self.add_error("featurizer", reason)
        params = {name: data.pop(name, None) for name in limits.ESTIMATOR_PARAMS}
        for name, value in params.items():
            takers = limits.ESTIMATOR_PARAMS[name]
            if value is not None and estimator not in takers:
                names = " and ".join(Project.Estimator(taker).label for taker in takers)
                self.add_error(name, f"only for {names}: leave it empty for "
                                     f"{Project.Estimator(estimator).label}")
        given = {name: value for name, value in params.items() if value is not None}
        # No model and no parameter in the request: leave the model as it is.
        data["model_params"] = given if given or data.get("estimator") else None
        return data


class ProjectSettingsForm(LearningSettingsForm):
    overlap = forms.IntegerField(min_value=limits.OVERLAP_MIN, max_value=limits.OVERLAP_MAX,
                                 help_text="How many different annotators label each sample.")
    keys = forms.CharField(max_length=200, required=False,
                           help_text="One key per label, in label order, e.g. 'asdf'. "
                                     "Empty: 1-9 (or the labels themselves when one character).")
    show_suggestion = forms.BooleanField(required=False, label="Show the model's suggestion",
                                         help_text="Hide it to avoid anchoring annotators.")
    production_share = forms.FloatField(
        required=False, min_value=limits.PRODUCTION_SHARE_MIN,
        max_value=limits.PRODUCTION_SHARE_MAX, label="Production share of the queue",
        widget=forms.NumberInput(attrs={"step": 0.05}),
        help_text="Production inputs a rule routes to labeling take this share of the next "
                  "samples handed out (1: all of them first; 0: by their own score).")

    field_order = ["overlap", "keys", "show_suggestion", "batch_size", "query_strategy",
                   "featurizer", "estimator", "C", "n_estimators", "promotion",
                   "test_fraction", "production_share"]

    def __init__(self, *args, project: Project, **kwargs) -> None:
        kwargs.setdefault("initial", self.initial_for(project))
        super().__init__(*args, **kwargs)
        self.kept_test_fraction = project.test_fraction
        self.fields["test_fraction"].required = False  # left out: unchanged
        self.current_estimator = project.estimator
        self.current_featurizer = limits.featurizer_of(project)
        self.project = project
        self.fields["test_fraction"].help_text += (
            " A new fraction moves no sample between splits: it applies to samples imported "
            "from now on and to how often the queue offers held-out samples.")

    @staticmethod
    def initial_for(project: Project) -> dict:
        """The form's values for the project's settings as they are."""
        params = project.estimator_params
        return {
            "overlap": project.overlap, "keys": "".join(project.keys),
            "show_suggestion": project.show_suggestion, "batch_size": project.batch_size,
            "query_strategy": project.query_strategy, "estimator": project.estimator,
            "C": params.get("C"), "n_estimators": params.get("n_estimators"),
            "promotion": project.promotion, "test_fraction": project.test_fraction,
            "production_share": project.production_share,
            "featurizer": limits.featurizer_of(project),
        }

    def project_kind(self) -> str:
        return self.project.kind

    def clean_keys(self) -> list[str]:
        return list(self.cleaned_data["keys"].replace(" ", "").replace(",", ""))


class ProjectCreateForm(LearningSettingsForm):
    name = forms.CharField(max_length=200)
    slug = forms.SlugField(max_length=100, help_text="Used in URLs and commands.")
    kind = forms.ChoiceField(choices=Project.Kind.choices)
    labels = forms.CharField(max_length=5000, help_text="Comma-separated, at least two.")

    field_order = ["name", "slug", "kind", "labels", "batch_size", "query_strategy",
                   "featurizer", "estimator", "C", "n_estimators", "promotion", "test_fraction"]

    def project_kind(self) -> str | None:
        return self.cleaned_data.get("kind")

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
