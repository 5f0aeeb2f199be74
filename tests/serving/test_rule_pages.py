"""Rules and schedules on pages: the rules page, the Settings and monitoring pages, the
project page's alerts, origin in the labeling API."""
import pytest
from django.utils import timezone
from django_celery_beat.models import PeriodicTask
from rest_framework.test import APIClient

from annotation.models import Sample
from serving.models import Rule, RuleFiring
from serving.rules.schedules import scheduled_export
from serving.rules.services import rule_create
from tests.factories import MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db

FORM = {"name": "accuracy watch", "metric": "live_accuracy", "op": "<", "threshold": "0.8",
        "window": "1h", "min_count": "50", "cooldown_minutes": "30",
        "actions": ["retrain", "route"], "route_count": "20", "enabled": "on"}


@pytest.fixture
def owner(client, project):
    client.force_login(project.owner)
    return client


def test_rules_page_adds_edits_and_deletes(owner, project):
    url = f"/projects/{project.slug}/rules/"
    assert owner.get(url).status_code == 200
    response = owner.post(url, FORM)
    assert response.status_code == 302
    rule = Rule.objects.get()
    assert rule.actions == ["route", "retrain"] and rule.min_count == 50
    assert rule.random_share == 0.2  # left empty: the default
    bad = owner.post(url, {**FORM, "threshold": "1.5"})
    assert bad.status_code == 400 and b"give a number from 0 to 1" in bad.content
    bad = owner.post(url, {**FORM, "metric": "live_accuracy", "column": "age"})
    assert bad.status_code == 400 and b"only a drift rule names a column" in bad.content
    edit = f"/projects/{project.slug}/rules/{rule.pk}/"
    assert owner.get(edit).status_code == 200
    assert owner.post(edit, {**FORM, "threshold": "0.7", "random_share": "0.25"}).status_code == 302
    rule.refresh_from_db()
    assert rule.threshold == 0.7 and rule.random_share == 0.25
    assert b"25% at random" in owner.get(url).content
    assert owner.post(edit, {**FORM, "random_share": "0"}).status_code == 302
    rule.refresh_from_db()
    assert rule.random_share == 0.0  # a 0 given is kept: no draws
    assert owner.post(f"{edit}delete").status_code == 302
    assert not Rule.objects.exists()


def test_annotators_may_not_reach_rules(client, project):
    user = UserFactory()
    MembershipFactory(project=project, user=user, role="annotator")
    client.force_login(user)
    assert client.get(f"/projects/{project.slug}/rules/").status_code == 403


def test_schedules_become_beat_rows_and_bad_cron_is_a_form_error(owner, project):
    url = f"/projects/{project.slug}/schedules"
    bad = owner.post(url, {"retrain": "61 * * * *", "export": ""})
    assert bad.status_code == 400 and b"not a cron expression" in bad.content
    assert owner.post(url, {"retrain": "0 3 * * *", "export": "30 4 * * 1"}).status_code == 302
    tasks = {t.name: t for t in PeriodicTask.objects.filter(name__startswith="project-")}
    retrain = tasks[f"project-{project.pk}-retrain"]
    assert retrain.task == "serving.tasks.scheduled_retrain_task"
    assert (retrain.crontab.minute, retrain.crontab.hour) == ("0", "3")
    assert owner.post(url, {"retrain": "", "export": "30 4 * * 1"}).status_code == 302
    assert not PeriodicTask.objects.filter(name=f"project-{project.pk}-retrain").exists()
    page = owner.get(f"/projects/{project.slug}/rules/").content.decode()
    assert "30 4 * * 1" in page


def test_scheduled_export_writes_a_csv(project, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    path = scheduled_export(project_id=project.pk)
    assert path.exists() and path.parent == tmp_path / "exports" / project.slug


def test_settings_monitoring_and_project_pages_show_rules(owner, served_project):
    rule = rule_create(project=served_project, data={"metric": "labels_since_model", "op": ">=",
                                                     "threshold": 0, "actions": ["alert"]})
    RuleFiring.objects.create(rule=rule, project=served_project, fired_at=timezone.now(),
                              condition=str(rule), value=3, count=3, actions=["alert"],
                              alerted=True)
    settings_page = owner.get(f"/projects/{served_project.slug}/settings/").content.decode()
    assert f"/projects/{served_project.slug}/rules/" in settings_page
    fragment = owner.get(f"/projects/{served_project.slug}/rules/", HTTP_HX_REQUEST="true")
    assert b'id="rules-table"' in fragment.content and b"<html" not in fragment.content
    monitoring = owner.get(f"/projects/{served_project.slug}/monitoring/").content.decode()
    assert 'id="rules-table"' in monitoring and 'id="rule-alerts"' in monitoring
    assert 'id="rule-firings"' in monitoring
    alerts = owner.get(f"/projects/{served_project.slug}/rules/alerts").content.decode()
    assert "labels_since_model" in alerts
    project_page = owner.get(f"/projects/{served_project.slug}/").content.decode()
    assert f"/projects/{served_project.slug}/rules/alerts" in project_page


def test_labeling_api_and_page_carry_origin(project, annotator, make_samples):
    [sample] = make_samples(1)
    Sample.objects.filter(pk=sample.pk).update(origin="production", score=5.0)
    client = APIClient()
    client.force_authenticate(annotator)
    data = client.get(f"/api/v1/projects/{project.slug}/next").json()
    assert data["sample"]["id"] == sample.pk and data["sample"]["origin"] == "production"
    client = __import__("django.test", fromlist=["Client"]).Client()
    client.force_login(annotator)
    page = client.get(f"/projects/{project.slug}/label/").content.decode()
    assert 'data-origin="production"' in page
