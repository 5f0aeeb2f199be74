"""Strategy, model, promotion, test fraction and batch size: set on the New project and
Settings pages and by the commands, refused when invalid, and every change recorded."""
import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from annotation.errors import NotAMember
from annotation.models import Project, ProjectSettingsChange, Sample
from annotation.services import InvalidSettings, project_create, project_settings_update
from tests.factories import MembershipFactory, ProjectFactory, UserFactory

CHOSEN = {"query_strategy": "entropy", "estimator": "random_forest", "n_estimators": 50,
          "promotion": "latest", "test_fraction": 0.3, "batch_size": 7}
OPTIONS = ["--strategy", "entropy", "--model", "random_forest", "--n-estimators", "50",
           "--promotion", "latest", "--test-fraction", "0.3", "--batch-size", "7"]


def _read_back(project: Project) -> dict:
    project.refresh_from_db()
    return {"query_strategy": project.query_strategy, "estimator": project.estimator,
            "n_estimators": project.estimator_params.get("n_estimators"),
            "promotion": project.promotion, "test_fraction": project.test_fraction,
            "batch_size": project.batch_size}


def _settings_post(project: Project, **changes) -> dict:
    """The Settings form as the browser sends it: every field, some of them changed."""
    data = {"overlap": project.overlap, "keys": "".join(project.keys),
            "batch_size": project.batch_size, "query_strategy": project.query_strategy,
            "estimator": project.estimator, "C": project.estimator_params.get("C", ""),
            "n_estimators": project.estimator_params.get("n_estimators", ""),
            "promotion": project.promotion, "test_fraction": project.test_fraction}
    if project.show_suggestion:
        data["show_suggestion"] = "on"
    data.update(changes)
    return data


def _member(project, role):
    user = UserFactory()
    MembershipFactory(project=project, user=user, role=role)
    return user


# --- set and read back, through each entry point ---------------------------------------------

def test_new_project_page_sets_every_learning_setting(client, db):
    user = ProjectFactory().owner
    client.force_login(user)
    page = client.get("/projects/new/")
    for name in ("query_strategy", "estimator", "n_estimators", "promotion", "test_fraction"):
        assert f'name="{name}"'.encode() in page.content
    response = client.post("/projects/new/", {"name": "News", "slug": "news", "kind": "text",
                                              "labels": "pos, neg", "C": "", **CHOSEN})
    assert response.status_code == 302, response.content.decode()
    assert _read_back(Project.objects.get(slug="news")) == CHOSEN


def test_new_project_page_defaults_when_nothing_is_chosen(client, db):
    client.force_login(ProjectFactory().owner)
    response = client.post("/projects/new/", {"name": "N", "slug": "n", "kind": "image",
                                              "labels": "a,b", "batch_size": 5,
                                              "test_fraction": 0.2})
    assert response.status_code == 302
    project = Project.objects.get(slug="n")
    assert (project.query_strategy, project.estimator, project.promotion) == (
        "default", "logreg", "best")


def test_create_project_command_sets_every_learning_setting(db):
    UserFactory(is_superuser=True)
    call_command("create_project", "news", "--kind", "text", "--labels", "pos,neg", *OPTIONS)
    assert _read_back(Project.objects.get(slug="news")) == CHOSEN
    call_command("create_project", "tab", "--kind", "tabular", "--labels", "a,b",
                 "--model", "logreg", "--C", "0.25")
    assert Project.objects.get(slug="tab").model_spec == {"estimator": "logreg",
                                                          "params": {"C": 0.25}}


def test_settings_page_sets_every_learning_setting(client, project):
    client.force_login(project.owner)
    page = client.get(reverse("project-settings", args=[project.slug]))
    assert page.status_code == 200 and b"next retrain" in page.content
    assert b"moves no sample between splits" in page.content
    response = client.post(reverse("project-settings", args=[project.slug]),
                           _settings_post(project, C="", **CHOSEN))
    assert response.status_code == 200 and b"Saved." in response.content
    assert _read_back(project) == CHOSEN


def test_project_settings_command_sets_every_learning_setting(project, capsys):
    call_command("project_settings", project.slug, *OPTIONS)
    assert _read_back(project) == CHOSEN
    out = capsys.readouterr().out
    assert "changed model: logreg -> random_forest" in out and "query_strategy: entropy" in out


def test_settings_keep_the_featurizer_and_other_params_of_the_same_estimator(project):
    project.model_spec = {"estimator": "logreg", "params": {"C": 2.0, "max_iter": 50},
                          "featurizer": {"max_features": 100}}
    project.save(update_fields=["model_spec"])
    project_settings_update(project=project, user=project.owner, estimator="logreg",
                            model_params={"C": 0.5})
    project.refresh_from_db()
    assert project.model_spec == {"estimator": "logreg", "params": {"C": 0.5, "max_iter": 50},
                                  "featurizer": {"max_features": 100}}
    # Another estimator starts from its own defaults: logreg's max_iter would not fit it.
    project_settings_update(project=project, user=project.owner, estimator="random_forest")
    project.refresh_from_db()
    assert project.model_spec == {"estimator": "random_forest",
                                  "featurizer": {"max_features": 100}}


def test_a_new_test_fraction_moves_no_sample_between_splits(client, project, make_samples):
    samples = make_samples(6, 3)
    before = dict(Sample.objects.values_list("pk", "split"))
    client.force_login(project.owner)
    response = client.post(reverse("project-settings", args=[project.slug]),
                           _settings_post(project, test_fraction=0.5))
    assert response.status_code == 200
    project.refresh_from_db()
    assert project.test_fraction == 0.5 and len(samples) == 9
    assert dict(Sample.objects.values_list("pk", "split")) == before


# --- refused, visibly -------------------------------------------------------------------------

INVALID = [
    ({"query_strategy": "bogus"}, b"Select a valid choice"),
    ({"estimator": "gpt"}, b"Select a valid choice"),
    ({"test_fraction": 0.9}, b"between 0.05 and 0.5"),
    ({"test_fraction": 0.01}, b"between 0.05 and 0.5"),
    ({"batch_size": 0}, b"greater than or equal to 1"),
    ({"estimator": "random_forest", "C": 0.5}, b"only for logistic regression and linear SVM"),
    ({"estimator": "logreg", "n_estimators": 10}, b"only for random forest"),
    ({"estimator": "logreg", "C": 0}, b"greater than or equal to"),
]


@pytest.mark.parametrize("changes,message", INVALID)
def test_settings_page_refuses_invalid_values_with_a_form_error(client, project, changes, message):
    client.force_login(project.owner)
    before = _read_back(project)
    response = client.post(reverse("project-settings", args=[project.slug]),
                           _settings_post(project, **changes))
    assert response.status_code == 400 and message in response.content
    assert b'class="error"' in response.content
    assert _read_back(project) == before and not ProjectSettingsChange.objects.exists()


@pytest.mark.parametrize("changes,message", INVALID + [
    ({"kind": "text", "estimator": "hist_gb"}, b"cannot train on text samples")])
def test_new_project_page_refuses_invalid_values_with_a_form_error(client, db, changes, message):
    client.force_login(ProjectFactory().owner)
    data = {"name": "News", "slug": "news", "kind": "image", "labels": "a,b", "batch_size": 5,
            "test_fraction": 0.2, **changes}
    response = client.post("/projects/new/", data)
    assert response.status_code == 400 and message in response.content
    assert not Project.objects.filter(slug="news").exists()


@pytest.mark.parametrize("options,message", [
    (["--strategy", "bogus"], "invalid choice"),
    (["--model", "gpt"], "invalid choice"),
    (["--test-fraction", "0.9"], "--test-fraction: give a fraction between 0.05 and 0.5"),
    (["--batch-size", "0"], "--batch-size: Ensure this value is greater than or equal to 1"),
    (["--model", "random_forest", "--C", "2"], "--C: only for logistic regression"),
    (["--model", "hist_gb"], "--model: histogram gradient boosting cannot train on text"),
])
def test_commands_refuse_invalid_values_with_a_command_error(project, options, message):
    UserFactory(is_superuser=True)
    with pytest.raises(CommandError, match=message):
        call_command("create_project", "news", "--kind", "text", "--labels", "a,b", *options)
    assert not Project.objects.filter(slug="news").exists()
    project.kind = Project.Kind.TEXT
    project.save(update_fields=["kind"])
    before = _read_back(project)
    with pytest.raises(CommandError, match=message):
        call_command("project_settings", project.slug, *options)
    assert _read_back(project) == before and not ProjectSettingsChange.objects.exists()


def test_services_refuse_what_the_forms_refuse(project):
    owner = project.owner
    for bad in ({"query_strategy": "bogus"}, {"estimator": "gpt"}, {"promotion": "oldest"},
                {"test_fraction": 0.9}, {"batch_size": 0}, {"overlap": 0},
                {"estimator": "random_forest", "model_params": {"C": 1.0}},
                {"model_params": {"n_estimators": 10}},  # logreg has no trees
                {"estimator": "random_forest", "model_params": {"n_estimators": 0}},
                {"model_params": {"depth": 3}}):
        with pytest.raises(InvalidSettings):
            project_settings_update(project=project, user=owner, **bad)
    with pytest.raises(InvalidSettings, match="cannot train on text"):
        project_create(owner=owner, slug="t", name="t", kind="text", labels=["a", "b"],
                       estimator="hist_gb")
    with pytest.raises(InvalidSettings):
        project_create(owner=owner, slug="t", name="t", kind="text", labels=["a", "b"],
                       query_strategy="bogus")
    assert not ProjectSettingsChange.objects.exists()


# --- recorded ---------------------------------------------------------------------------------

def test_changes_are_recorded_with_old_and_new_values_and_the_acting_user(client, project):
    scientist = _member(project, "scientist")
    client.force_login(scientist)
    url = reverse("project-settings", args=[project.slug])
    client.post(url, _settings_post(project, C="", **CHOSEN))
    rows = list(ProjectSettingsChange.objects.order_by("pk")
                .values_list("user", "field", "old_value", "new_value"))
    assert rows == [
        (scientist.pk, "batch_size", "10", "7"),
        (scientist.pk, "query_strategy", "default", "entropy"),
        (scientist.pk, "promotion", "best", "latest"),
        (scientist.pk, "test_fraction", "0.2", "0.3"),
        (scientist.pk, "estimator", "logreg", "random_forest"),
        (scientist.pk, "n_estimators", "", "50"),
    ]
    # Saving the same values again records nothing.
    project.refresh_from_db()
    client.post(url, _settings_post(project))
    assert ProjectSettingsChange.objects.count() == 6
    # The command records its changes without a user.
    call_command("project_settings", project.slug, "--batch-size", "9")
    latest = ProjectSettingsChange.objects.first()  # newest first
    assert (latest.user, latest.field, latest.old_value, latest.new_value) == (
        None, "batch_size", "7", "9")
    page = client.get(url)
    history = page.content.split(b'id="settings-history"')[1]
    assert history.index(b"command line") < history.index(scientist.username.encode())
    assert b"random_forest" in history and b"entropy" in history


def test_settings_page_history_is_bounded(client, project):
    for size in range(2, 62):
        project_settings_update(project=project, user=project.owner, batch_size=size)
    assert ProjectSettingsChange.objects.count() == 60
    client.force_login(project.owner)
    page = client.get(reverse("project-settings", args=[project.slug])).content.decode()
    history = page.split('id="settings-history"')[1]
    assert history.count("<tr>") == 1 + 50  # the header and the newest 50
    assert "<td>60</td>\n        <td>61</td>" in history and "<td>2</td>" not in history


def test_admin_lists_settings_changes_read_only(client, project):
    project_settings_update(project=project, user=project.owner, promotion="latest")
    admin = UserFactory(is_staff=True, is_superuser=True)
    client.force_login(admin)
    listing = client.get("/admin/annotation/projectsettingschange/")
    assert listing.status_code == 200 and b"latest" in listing.content
    assert client.get("/admin/annotation/projectsettingschange/add/").status_code == 403


# --- who may -----------------------------------------------------------------------------------

def test_annotators_cannot_change_settings(client, project):
    annotator = _member(project, "annotator")
    client.force_login(annotator)
    url = reverse("project-settings", args=[project.slug])
    before = _read_back(project)
    assert client.get(url).status_code == 403
    assert client.post(url, _settings_post(project, C="", **CHOSEN)).status_code == 403
    assert _read_back(project) == before
    with pytest.raises(NotAMember):
        project_settings_update(project=project, user=annotator, estimator="random_forest")
    assert not ProjectSettingsChange.objects.exists()
