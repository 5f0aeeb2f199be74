"""Login guessing is locked out per username and address, and per address (django-axes)."""
from django.core.management import call_command

from tests.factories import UserFactory

HERE, ELSEWHERE = "203.0.113.7", "198.51.100.9"


def _login(client, username, password, address=HERE):
    return client.post("/login/", {"username": username, "password": password},
                       REMOTE_ADDR=address)


def _logged_in(client) -> bool:
    return "_auth_user_id" in client.session


def test_ten_wrong_passwords_lock_the_account_at_that_address_with_a_message(client, db, settings):
    user = UserFactory()
    answers = [_login(client, user.username, f"guess{i}") for i in range(settings.LOGIN_FAILURE_LIMIT)]
    assert [a.status_code for a in answers[:-1]] == [200] * (settings.LOGIN_FAILURE_LIMIT - 1)
    assert b"Wrong username or password" in answers[0].content
    locked = answers[-1]
    assert locked.status_code == 429
    assert b"Too many failed logins" in locked.content and b'name="password"' in locked.content

    # The right password is refused too while locked, with the same message on the login page.
    refused = _login(client, user.username, "pw")
    assert refused.status_code == 429 and b"Too many failed logins" in refused.content
    assert not _logged_in(client)

    # Not a lockout of the account everywhere: its owner elsewhere still logs in.
    assert _login(client, user.username, "pw", address=ELSEWHERE).status_code == 302
    assert _logged_in(client)


def test_a_password_sprayed_over_many_accounts_locks_the_address(client, db, settings):
    users = UserFactory.create_batch(settings.LOGIN_ADDRESS_FAILURE_LIMIT)
    answers = [_login(client, u.username, "Summer2024!").status_code for u in users]
    assert answers[:-1] == [200] * (len(users) - 1) and answers[-1] == 429
    fresh = UserFactory()
    assert _login(client, fresh.username, "pw").status_code == 429
    assert _login(client, fresh.username, "pw", address=ELSEWHERE).status_code == 302


def test_a_few_typos_do_not_lock_and_axes_reset_unlocks(client, db, settings):
    user = UserFactory()
    for i in range(settings.LOGIN_FAILURE_LIMIT - 1):
        _login(client, user.username, f"typo{i}")
    assert _login(client, user.username, "pw").status_code == 302
    client.logout()
    for i in range(settings.LOGIN_FAILURE_LIMIT):
        _login(client, user.username, f"typo{i}")
    assert _login(client, user.username, "pw").status_code == 429
    call_command("axes_reset_username", user.username)
    assert _login(client, user.username, "pw").status_code == 302


def test_the_lockout_counts_the_address_behind_a_trusted_proxy(client, db, settings):
    settings.TRUSTED_PROXY_COUNT = 1
    user = UserFactory()
    proxy = "10.0.0.1"
    for i in range(settings.LOGIN_FAILURE_LIMIT):
        client.post("/login/", {"username": user.username, "password": f"g{i}"},
                    REMOTE_ADDR=proxy, HTTP_X_FORWARDED_FOR=f"1.2.3.{i}, {HERE}")
    # Spoofed left-hand entries changed every time; the proxy's own entry did not.
    assert client.post("/login/", {"username": user.username, "password": "pw"},
                       REMOTE_ADDR=proxy, HTTP_X_FORWARDED_FOR=HERE).status_code == 429
    assert client.post("/login/", {"username": user.username, "password": "pw"},
                       REMOTE_ADDR=proxy, HTTP_X_FORWARDED_FOR=ELSEWHERE).status_code == 302
