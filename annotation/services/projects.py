"""Writes for projects and their members."""
from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import models, transaction
from django.utils import timezone

from annotation.access import (
    LABELING_ROLES,
    SCIENCE_ROLES,
    member_require,
    project_create_require,
)
from annotation.authentication import key_hash
from annotation.errors import InvalidLabel
from annotation import hooks
from annotation import project_limits as limits
from annotation.models import COMMAND_KEYS, ApiToken, Membership, Project, ProjectSettingsChange
from annotation.services import ledger
from core.errors import DomainError
from core.text import text_check


class InvalidSettings(DomainError):
    code = "invalid_settings"


@transaction.atomic
def project_create(
    *,
    owner: AbstractBaseUser,
    slug: str,
    name: str,
    kind: str,
    labels: Sequence[str],
    batch_size: int = 20,
    test_fraction: float = 0.2,
    query_strategy: str | None = None,
    promotion: str | None = None,
    estimator: str | None = None,
    model_params: Mapping[str, Any] | None = None,
    featurizer: str | None = None,
) -> Project:
    """Create a project and make ``owner`` its owner.

    A strategy or promotion policy left out (``None``) is the default; without
    ``estimator`` the project trains the default for its kind. The forms keep
    ``test_fraction`` within the limits of ``annotation.project_limits``; callers in code
    (benchmarks, tests) may hold out anything the table allows, 0 included.
    """
    text_check(slug, field="slug", max_chars=100)
    text_check(name, field="name", max_chars=200)
    labels = [text_check(str(label), field="labels", max_chars=200).strip()
              for label in labels if str(label).strip()]
    if len(labels) < 2 or len(set(labels)) != len(labels):
        raise InvalidLabel("a project needs at least two distinct labels", detail=labels)
    if not isinstance(batch_size, int) or batch_size < limits.BATCH_SIZE_MIN:
        raise InvalidSettings(f"batch size is at least {limits.BATCH_SIZE_MIN}")
    if not 0 <= test_fraction < 1:
        raise InvalidSettings("the test fraction is at least 0 and below 1")
    model_spec = {}
    if estimator is not None or model_params:
        model_spec = _model_spec_with({}, *_model_check(estimator or Project.DEFAULT_ESTIMATOR,
                                                        model_params or {}, kind=kind))
    if featurizer is not None:
        model_spec = _model_spec_featurizer(model_spec, _featurizer_check(featurizer, kind=kind),
                                            kind=kind)
    project = Project.objects.create(
        owner=owner,
        slug=slug,
        name=name,
        kind=kind,
        labels=labels,
        batch_size=batch_size,
        test_fraction=test_fraction,
        query_strategy=_choice_check(query_strategy or Project.Strategy.DEFAULT,
                                     Project.Strategy, "query strategy"),
        promotion=_choice_check(promotion or Project.Promotion.BEST,
                                Project.Promotion, "promotion policy"),
        model_spec=model_spec,
    )
    Membership.objects.create(project=project, user=owner, role=Membership.Role.OWNER)
    ledger.label_counts_create(project=project)
    return project


def project_create_by(*, user: AbstractBaseUser, **fields) -> Project:
    """Create a project on behalf of ``user`` from a page: only staff and owners may.

    Commands (``create_project``, ``load_demo``) are run by the operator and call
    :func:`project_create` directly.
    """
    project_create_require(user)
    return project_create(owner=user, **fields)


def _within(value: float, low: float, high: float, what: str) -> float:
    """Return ``value`` when ``low <= value <= high`` (so never NaN); else refuse it."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise InvalidSettings(f"{what} is between {low:g} and {high:g}")
    return value


def _choice_check(value: str, choices: type[models.TextChoices], what: str) -> str:
    if value not in choices.values:
        raise InvalidSettings(f"unknown {what} {value!r}; choose from {', '.join(choices.values)}")
    return str(value)


def _model_check(estimator: str, params: Mapping[str, Any], *, kind: str
                 ) -> tuple[str, dict[str, Any]]:
    """Return the estimator and the parameters set (``None`` leaves one to its default)."""
    estimator = _choice_check(estimator, Project.Estimator, "model")
    reason = limits.estimator_unfit_reason(estimator=estimator, kind=kind)
    if reason:
        raise InvalidSettings(reason)
    params = {name: value for name, value in params.items() if value is not None}
    for name, value in params.items():
        takers = limits.ESTIMATOR_PARAMS.get(name)
        if takers is None:
            raise InvalidSettings(f"unknown model parameter {name!r}; "
                                  f"choose from {', '.join(limits.ESTIMATOR_PARAMS)}")
        if estimator not in takers:
            raise InvalidSettings(f"{name} is a parameter of {', '.join(takers)}, not of "
                                  f"{estimator}: leave it empty")
    if "C" in params:
        _within(params["C"], limits.C_MIN, limits.C_MAX, "C")
    if "n_estimators" in params:
        n = _within(params["n_estimators"], limits.N_ESTIMATORS_MIN, limits.N_ESTIMATORS_MAX,
                    "n_estimators")
        if n != int(n):
            raise InvalidSettings("n_estimators is a whole number")
        params["n_estimators"] = int(n)
    return estimator, params


def _model_spec_with(spec: Mapping[str, Any], estimator: str, params: dict[str, Any]) -> dict:
    """Return ``spec`` training ``estimator`` with the settable ``params``.

    The featurizer's part is kept, and so are other parameters when the estimator stays
    the same; a different estimator starts from its own defaults.
    """
    spec = dict(spec)
    kept = dict(spec.get("params") or {}) if estimator == spec.get("estimator") else {}
    for name in limits.ESTIMATOR_PARAMS:
        kept.pop(name, None)
    kept.update(params)
    spec["estimator"] = estimator
    return _with_part(spec, "params", kept)


def _with_part(spec: dict, key: str, part: dict) -> dict:
    """Return ``spec`` with ``part`` under ``key``, or without ``key`` when it is empty."""
    if part:
        spec[key] = part
    else:
        spec.pop(key, None)
    return spec


def _featurizer_check(featurizer: str, *, kind: str) -> str:
    """Return ``featurizer`` when it featurizes ``kind`` samples and can run here."""
    reason = limits.featurizer_unfit_reason(featurizer=str(featurizer), kind=kind)
    if reason is None:
        reason = hooks.featurizer_unavailable(featurizer=str(featurizer))
    if reason:
        raise InvalidSettings(reason, detail={"featurizer": [reason]})
    return str(featurizer)


def _model_spec_featurizer(spec: Mapping[str, Any], featurizer: str, *, kind: str) -> dict:
    """Return ``spec`` featurizing with ``featurizer``; the kind's default is stored as no
    name, and parameters of another featurizer are dropped."""
    spec = dict(spec)
    current = dict(spec.get("featurizer") or {})
    if (current.get("name") or limits.FEATURIZERS[kind][0][0]) != featurizer:
        current = {}
    if featurizer != limits.FEATURIZERS[kind][0][0]:
        current["name"] = featurizer
    return _with_part(spec, "featurizer", current)


def _keys_check(keys: Sequence[str], labels: Sequence[str]) -> list[str]:
    keys = [str(key) for key in keys]
    if not keys:
        return []
    if len(keys) != len(labels):
        raise InvalidSettings(f"give one key per label ({len(labels)}), in label order")
    if any(len(key) != 1 or key.isspace() for key in keys):
        raise InvalidSettings("each key is a single character")
    if len({key.lower() for key in keys}) != len(keys):
        raise InvalidSettings("the keys must be distinct")
    taken = sorted({key for key in keys if key.lower() in COMMAND_KEYS})
    if taken:
        raise InvalidSettings(f"{', '.join(taken)} are kept for skip, undo, zoom and help")
    return keys


def _shown(value: Any) -> str:
    """A setting's value as the history shows it; empty for a parameter left to its default."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, (list, tuple)):
        return "".join(map(str, value))
    return str(value)


def _settings_apply(
    *,
    project: Project,
    user: AbstractBaseUser | None,
    overlap: int | None = None,
    keys: Sequence[str] | None = None,
    show_suggestion: bool | None = None,
    batch_size: int | None = None,
    query_strategy: str | None = None,
    promotion: str | None = None,
    test_fraction: float | None = None,
    estimator: str | None = None,
    model_params: Mapping[str, Any] | None = None,
    production_share: float | None = None,
    featurizer: str | None = None,
) -> Project:
    """Check and save the settings given (``None``: unchanged) and record each change."""
    # The row is locked so that the old values recorded are the ones replaced. NO KEY
    # UPDATE: label and lease inserts, which share-lock the project row, do not wait.
    current = Project.objects.select_for_update(no_key=True).get(pk=project.pk)
    new: dict[str, Any] = {}
    if overlap is not None:
        new["overlap"] = _within(overlap, limits.OVERLAP_MIN, limits.OVERLAP_MAX,
                                 "overlap (annotators per sample)")
    if keys is not None:
        new["keys"] = _keys_check(keys, current.labels)
    if show_suggestion is not None:
        new["show_suggestion"] = bool(show_suggestion)
    if batch_size is not None:
        new["batch_size"] = _within(batch_size, limits.BATCH_SIZE_MIN, limits.BATCH_SIZE_MAX,
                                    "batch size")
    if query_strategy is not None:
        new["query_strategy"] = _choice_check(query_strategy, Project.Strategy, "query strategy")
    if promotion is not None:
        new["promotion"] = _choice_check(promotion, Project.Promotion, "promotion policy")
    # A project made in code may hold out a fraction outside the limits; it may keep it.
    if test_fraction is not None and test_fraction != current.test_fraction:
        new["test_fraction"] = float(_within(test_fraction, limits.TEST_FRACTION_MIN,
                                             limits.TEST_FRACTION_MAX, "the test fraction"))
    if production_share is not None:
        new["production_share"] = float(_within(production_share, limits.PRODUCTION_SHARE_MIN,
                                                limits.PRODUCTION_SHARE_MAX,
                                                "the production share"))
    changes = [(field, getattr(current, field), value) for field, value in new.items()
               if getattr(current, field) != value]

    if estimator is not None or model_params is not None:
        name = current.estimator if estimator is None else estimator
        if model_params is None:  # the same estimator keeps its parameters
            model_params = current.estimator_params if name == current.estimator else {}
            model_params = {k: v for k, v in model_params.items() if k in limits.ESTIMATOR_PARAMS}
        name, params = _model_check(name, model_params, kind=current.kind)
        model_changes = [("estimator", current.estimator, name)] if name != current.estimator else []
        old_params = current.estimator_params
        model_changes += [(param, old_params.get(param), params.get(param))
                          for param in limits.ESTIMATOR_PARAMS
                          if old_params.get(param) != params.get(param)]
        if model_changes:
            new["model_spec"] = _model_spec_with(current.model_spec or {}, name, params)
            changes += model_changes

    if featurizer is not None and featurizer != limits.featurizer_of(current):
        spec = new.get("model_spec", current.model_spec or {})
        new["model_spec"] = _model_spec_featurizer(
            spec, _featurizer_check(featurizer, kind=current.kind), kind=current.kind)
        changes.append(("featurizer", limits.featurizer_of(current), featurizer))

    if not changes:
        return project
    if new.get("overlap", current.overlap) < current.overlap:
        ledger.samples_complete(project=current, overlap=new["overlap"])
    changed = {field for field, _old, _new in changes}
    fields = [field for field in new if field in changed or field == "model_spec"]
    for field in fields:
        setattr(current, field, new[field])
        setattr(project, field, new[field])
    current.save(update_fields=fields)
    now = timezone.now()
    ProjectSettingsChange.objects.bulk_create(
        ProjectSettingsChange(project=current, user=user, changed_at=now, field=field,
                              old_value=_shown(old), new_value=_shown(value))
        for field, old, value in changes
    )
    return project


@transaction.atomic
def project_settings_update(*, project: Project, user: AbstractBaseUser, **values) -> Project:
    """Change a project's settings on behalf of ``user``; owners and scientists only.

    ``values`` are the settings of :func:`_settings_apply`, each ``None`` or left out to keep it.
    Each change is recorded (``ProjectSettingsChange``) in the same transaction.

    A larger overlap puts labeled samples back in the queue only for samples labeled from
    now on; samples already labeled stay labeled. A new test fraction never moves a sample
    between splits: samples draw their split once, on import. A new model, strategy or
    promotion policy is used from the next retrain on.
    """
    member_require(project=project, user=user, roles=SCIENCE_ROLES)
    return _settings_apply(project=project, user=user, **values)


@transaction.atomic
def project_settings_set(*, project: Project, **values) -> Project:
    """Change a project's settings as the operator (the ``project_settings`` command): no
    role check, and the changes are recorded without a user."""
    return _settings_apply(project=project, user=None, **values)


@transaction.atomic
def personal_token_create(*, project: Project, user: AbstractBaseUser) -> tuple[object, str]:
    """Create a personal API token acting as ``user`` in ``project``; return it and its key.

    Only the key's hash is stored. The token may label (``next``, ``labels``) with the
    user's role; it carries none of the project token scopes (predict, feedback, admin).
    """
    member_require(project=project, user=user, roles=LABELING_ROLES)
    key = secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        project=project, user=user, name=f"personal: {user.get_username()}",
        key_hash=key_hash(key), key_prefix=key[:8], scopes=[ApiToken.Scope.LABEL],
    )
    return token, key


@transaction.atomic
def membership_set(*, project: Project, user: AbstractBaseUser, role: str) -> Membership:
    """Give ``user`` the ``role`` in ``project``, replacing any role they had."""
    membership, _ = Membership.objects.update_or_create(
        project=project, user=user, defaults={"role": role}
    )
    return membership
