"""A live service with a served text model, and clients of it."""
import pytest
from django.core.cache import cache

from annotation.models import Membership
from annotation.services.projects import personal_token_create
from annotation_client import Client
from serving.services import api_token_create
from tests.serving.conftest import served_project, train_version  # noqa: F401 (a fixture)

# The words of text_project_labeled's texts.
WORDS = {"spam": "win prize cash free offer", "ham": "meeting lunch report team notes"}
ALL_SCOPES = ["predict", "feedback", "admin", "monitor"]


@pytest.fixture
def service(live_server, settings, transactional_db, text_project_labeled):
    """A text project with a served model; a client with every project scope, one with a
    predict-only token and one with the annotator's personal token."""
    settings.API_THROTTLE_RATES = {scope: "100000/min" for scope in settings.API_THROTTLE_RATES}
    cache.clear()
    project = text_project_labeled
    assert train_version(project).status == "ready"
    _t, key = api_token_create(project=project, scopes=ALL_SCOPES)
    _t, predict_key = api_token_create(project=project, scopes=["predict"])
    annotator = Membership.objects.get(project=project, role="annotator").user
    _t, personal_key = personal_token_create(project=project, user=annotator)
    client = Client(live_server.url, key)
    return (project, client, client.with_token(predict_key), client.with_token(personal_key))
