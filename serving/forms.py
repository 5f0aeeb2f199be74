"""Forms of the serving pages."""
from django import forms

from annotation.models import ApiToken

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
