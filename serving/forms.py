"""Forms of the serving pages."""
from django import forms

from annotation.models import ApiToken
from serving.models import Rule
from serving.monitoring_selectors import WINDOWS
from serving.rules.schedules import InvalidSchedule, cron_check
from serving.rules.validation import FIELDS, InvalidRule, rule_check

CLIENT_SCOPES = [
    (ApiToken.Scope.PREDICT, "predict"),
    (ApiToken.Scope.FEEDBACK, "feedback"),
    (ApiToken.Scope.ADMIN, "admin (promote models, import, export)"),
    (ApiToken.Scope.MONITOR, "monitor (read the monitoring numbers)"),
]


class TokenForm(forms.Form):
    name = forms.CharField(max_length=100, required=False,
                           help_text="What the token is for, e.g. 'checkout service'.")
    scopes = forms.MultipleChoiceField(choices=CLIENT_SCOPES, widget=forms.CheckboxSelectMultiple,
                                       initial=[ApiToken.Scope.PREDICT])


class RuleForm(forms.Form):
    """A rule on the Settings → Rules page; ``serving.rules.validation.rule_check`` checks
    it (its refusals become this form's field errors)."""

    name = forms.CharField(max_length=200, required=False)
    metric = forms.ChoiceField(choices=Rule.Metric.choices)
    column = forms.CharField(max_length=200, required=False,
                             help_text="Drift only: this column's drift score instead of the "
                                       "share of drifted features.")
    op = forms.ChoiceField(choices=Rule.Op.choices, label="Comparison")
    threshold = forms.FloatField()
    window = forms.ChoiceField(choices=[(w, w) for w in WINDOWS], initial="1h")
    min_count = forms.IntegerField(min_value=0, initial=0, label="Minimum observations")
    cooldown_minutes = forms.IntegerField(min_value=1, initial=60, label="Cool-down (minutes)")
    actions = forms.MultipleChoiceField(choices=Rule.Action.choices,
                                        widget=forms.CheckboxSelectMultiple)
    route_count = forms.IntegerField(min_value=1, max_value=500, initial=20,
                                     label="Inputs to route",
                                     help_text="How many production inputs 'route' sends to "
                                               "annotators.")
    random_share = forms.FloatField(min_value=0, max_value=1,
                                    initial=Rule.RANDOM_SHARE_DEFAULT, required=False,
                                    label="Drawn at random",
                                    help_text="Share of the routed inputs drawn at random from "
                                              "the served model's predictions, held out as test "
                                              "samples: the promotion check sees production "
                                              "data, and their labels count as live accuracy "
                                              f"(empty: {Rule.RANDOM_SHARE_DEFAULT}; 0: "
                                              "none).")
    enabled = forms.BooleanField(required=False, initial=True)

    def clean_random_share(self) -> float:
        share = self.cleaned_data["random_share"]
        return Rule.RANDOM_SHARE_DEFAULT if share is None else share

    def clean(self) -> dict:
        data = super().clean()
        if self.errors:
            return data
        try:
            self.rule_data = rule_check(data)
        except InvalidRule as exc:
            field = exc.field if exc.field in self.fields else None
            self.add_error(field, exc.detail[exc.field][0])
        return data

    @staticmethod
    def initial_for(rule: Rule) -> dict:
        return {field: getattr(rule, field) for field in FIELDS}


class ScheduleForm(forms.Form):
    retrain = forms.CharField(max_length=100, required=False, label="Retrain (cron, UTC)",
                              help_text="e.g. '0 3 * * *' every day at 03:00; empty: none.")
    export = forms.CharField(max_length=100, required=False, label="Export labels (cron, UTC)",
                             help_text="A CSV under MEDIA_ROOT/exports/<slug>/; empty: none.")

    def _cron(self, name: str) -> str:
        value = " ".join(self.cleaned_data[name].split())
        if value:
            try:
                cron_check(value)
            except InvalidSchedule as exc:
                raise forms.ValidationError(exc.message) from None
        return value

    def clean_retrain(self) -> str:
        return self._cron("retrain")

    def clean_export(self) -> str:
        return self._cron("export")
