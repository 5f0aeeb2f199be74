"""Login guessing: django-axes counts failed logins; this module sets its limits and answer.

Two limits, within ``LOGIN_LOCKOUT_MINUTES`` of the last failure:

- ``LOGIN_FAILURE_LIMIT`` (10) failures for one username from one address lock that pair:
  someone guessing one account gets few tries, and nobody elsewhere can lock its owner out;
- ``LOGIN_ADDRESS_FAILURE_LIMIT`` (30) failures from one address, whatever the usernames,
  lock the address: a password sprayed over many accounts is stopped too, while a team
  behind one NAT can still mistype now and then.

While locked, the right password is refused as well, and the login page says why (429).
Unlock early with ``manage.py axes_reset_username <name>``, ``axes_reset_ip <address>`` or
``axes_reset`` (everything).
"""
from __future__ import annotations

from django.conf import settings
from django.contrib.auth.forms import AuthenticationForm
from django.db.models import Sum
from django.shortcuts import render
from axes.handlers.database import AxesDatabaseHandler


def _sum(attempts) -> int:
    return attempts.aggregate(total=Sum("failures_since_start"))["total"] or 0


class LoginAttempts(AxesDatabaseHandler):
    """Axes' database handler, with a limit per (username, address) and one per address.

    Axes compares the largest count of its lockout parameters with a single limit; here the
    address count only counts once it reaches its own, higher limit. ``AXES_LOCKOUT_PARAMETERS``
    lists the pair first, then the address.
    """

    def get_failures(self, request, credentials: dict | None = None) -> int:
        pair, address = (_sum(attempts) for attempts in self.get_user_attempts(request, credentials))
        if address >= settings.LOGIN_ADDRESS_FAILURE_LIMIT:
            return max(pair, address)
        return pair


def lockout_message() -> str:
    minutes = settings.LOGIN_LOCKOUT_MINUTES
    return (f"Too many failed logins: logging in from here is locked for {minutes} minutes "
            "after the last attempt. Wait, or ask an administrator to unlock it.")


def lockout_response(request, original_response=None, credentials=None):
    """The login page again, with the lockout explained, status 429 (``AXES_LOCKOUT_CALLABLE``)."""
    context = {"form": AuthenticationForm(request), "lockout": lockout_message(),
               "next": request.POST.get("next", "")}
    return render(request, "registration/login.html", context, status=429)
