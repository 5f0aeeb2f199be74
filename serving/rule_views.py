"""Pages of KPI rules and scheduled jobs: ``/projects/<slug>/rules/`` (owners and scientists),
also shown inside the Settings page (htmx loads the list there)."""
from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from annotation.access import SCIENCE_ROLES
from annotation.models import Project
from annotation.page_access import project_page
from serving.forms import RuleForm, ScheduleForm
from serving.rules.schedules import schedule_set, schedules_of
from serving.rules.selectors import (
    alerts_open,
    project_firings,
    routing_unkept,
    rule_get,
    rule_list,
)
from serving.rules.services import rule_create, rule_delete, rule_update


def _rule_or_404(project: Project, rule_id: int):
    rule = rule_get(project=project, rule_id=rule_id)
    if rule is None:
        raise Http404("no such rule")
    return rule


def _saved(request: HttpRequest, form: RuleForm, save) -> bool:
    """A posted, valid form is saved (``save(rule JSON)``); else the page shows its errors."""
    if request.method == "POST" and form.is_valid():
        save(form.rule_data)
        return True
    return False


def _context(project: Project, **extra) -> dict:
    schedules = schedules_of(project=project)
    return {"project": project, "rules": rule_list(project=project),
            "firings": project_firings(project=project, limit=10),
            "alerts": alerts_open(project=project), "unkept": routing_unkept(project=project),
            "schedules": schedules,
            "schedule_form": ScheduleForm(initial={job: s["cron"] for job, s in schedules.items()}),
            **extra}


@project_page(methods=("GET", "POST"), roles=SCIENCE_ROLES)
def project_rules(request: HttpRequest, project: Project) -> HttpResponse:
    """The rules, their last firings and open alerts, a form for a new rule, the schedules.
    An htmx request (the Settings page) gets the list alone."""
    if getattr(request, "htmx", False) and request.method == "GET":
        return render(request, "serving/_rules_list.html", _context(project))
    form = RuleForm(request.POST or None, initial={"actions": ["alert"]})
    if _saved(request, form, lambda data: rule_create(project=project, data=data)):
        return redirect("project-rules", slug=project.slug)
    return render(request, "serving/rules.html", _context(project, form=form),
                  status=400 if form.is_bound else 200)


@project_page(methods=("GET", "POST"), roles=SCIENCE_ROLES)
def project_rule_edit(request: HttpRequest, project: Project, rule_id: int) -> HttpResponse:
    rule = _rule_or_404(project, rule_id)
    form = RuleForm(request.POST or None, initial=RuleForm.initial_for(rule))
    if _saved(request, form, lambda data: rule_update(rule=rule, data=data)):
        return redirect("project-rules", slug=project.slug)
    return render(request, "serving/rule_edit.html",
                  {"project": project, "rule": rule, "form": form},
                  status=400 if form.is_bound else 200)


@project_page(methods=("POST",), roles=SCIENCE_ROLES)
def project_rule_delete(request: HttpRequest, project: Project, rule_id: int) -> HttpResponse:
    rule_delete(rule=_rule_or_404(project, rule_id))
    return redirect("project-rules", slug=project.slug)


@project_page(methods=("POST",), roles=SCIENCE_ROLES)
def project_schedules(request: HttpRequest, project: Project) -> HttpResponse:
    form = ScheduleForm(request.POST)
    if not form.is_valid():
        context = _context(project, form=RuleForm(initial={"actions": ["alert"]}))
        context["schedule_form"] = form
        return render(request, "serving/rules.html", context, status=400)
    for job in ("retrain", "export"):
        schedule_set(project=project, job=job, expression=form.cleaned_data[job])
    return redirect("project-rules", slug=project.slug)


@project_page(methods=("GET",), roles=SCIENCE_ROLES)
def project_rule_alerts(request: HttpRequest, project: Project) -> HttpResponse:
    """The open alerts of the project's rules (loaded into the project page by htmx)."""
    return render(request, "serving/_rule_alerts.html",
                  {"project": project, "alerts": alerts_open(project=project)})
