"""A project on the adaptive default strategy whose mix the tests can measure: a two-class
text set (spam/ham) with labeled pool and test samples, and helpers that retrain, rank and
label the ranked picks as the queue would hand them out."""
import numpy as np
import pytest

from annotation.models import Project, Sample
from learning.models import StrategyPick
from learning.services import model_version_request, model_version_train, pool_score
from tests.factories import label_given

WORDS = {"spam": "win prize cash free offer bonus".split(),
         "ham": "meeting lunch report team notes agenda".split()}


def train_and_rank(project):
    version = model_version_request(project=project)
    model_version_train(version_id=version.pk)
    version.refresh_from_db()
    pool_score(project=project, version=version)  # the synchronous rescoring and ranking
    return version


def _text(rng, label):
    other = "ham" if label == "spam" else "spam"
    words = list(rng.choice(WORDS[label], 3)) + list(rng.choice(WORDS[other], 1))
    return " ".join(words)


@pytest.fixture
def default_project(db, project, annotator):
    project.kind = Project.Kind.TEXT
    project.labels = ["spam", "ham"]
    project.batch_size = 20
    project.query_strategy = "default"
    project.save()
    rng = np.random.default_rng(0)
    for i in range(40):
        label = "spam" if i % 2 else "ham"
        split = Sample.Split.TEST if i >= 24 else Sample.Split.POOL
        sample = Sample.objects.create(project=project, text=_text(rng, label), split=split)
        label_given(sample=sample, annotator=annotator, value=label)
    for i in range(120):
        label = "spam" if i % 2 else "ham"
        Sample.objects.create(project=project, text=_text(rng, label), external_id=label)
    project.batch_size = 1000  # retrains are requested by the test
    project.save()
    return project


def label_picks(project, annotator, n):
    picks = list(StrategyPick.objects.filter(project=project, sample__status="unlabeled")
                 .select_related("sample").order_by("-sample__score")[:n])
    for pick in picks:
        label_given(sample=pick.sample, annotator=annotator, value=pick.sample.external_id)
    return picks
