"""The queue functions are frozen per migration: what a database has never follows the live module.

Each migration that installs the PL/pgSQL queue functions defines ``QUEUE_FUNCTIONS_SQL``
and ``QUEUE_FUNCTIONS_DROP``, literal copies; the latest of them must install what
``annotation.queue_functions_sql`` says now, or a fresh database and a migrated one differ
from the code that calls them. The text checks run everywhere; the checks of what the
migrations install (and their reverses) need PostgreSQL.
"""
from __future__ import annotations

import difflib
import inspect
import io

import pytest
from django.apps import apps as global_apps
from django.core.management import CommandError, call_command
from django.db import connection, migrations, transaction
from django.db.migrations.loader import MigrationLoader

from annotation import queue_functions_sql
from annotation.management.commands.queue_functions_migration import (
    installing_migrations, next_migration_path, render_migration,
)
from tests.conftest import require_service


def _live():
    return tuple(queue_functions_sql.CREATE), tuple(queue_functions_sql.DROP)


def _frozen(module):
    return tuple(module.QUEUE_FUNCTIONS_SQL), tuple(module.QUEUE_FUNCTIONS_DROP)


def test_the_latest_queue_functions_migration_installs_the_live_sql():
    name, module = installing_migrations()[-1]
    if _live() == _frozen(module):
        return
    diff = "\n".join(list(difflib.unified_diff(
        "\n".join(sum(_frozen(module), ())).splitlines(),
        "\n".join(sum(_live(), ())).splitlines(),
        f"annotation/migrations/{name}.py", "annotation/queue_functions_sql.py", lineterm="",
    ))[:60])
    new = next_migration_path().relative_to(next_migration_path().parents[2])
    pytest.fail(
        f"annotation/queue_functions_sql.py differs from the SQL that migration {name} "
        f"installs, so a fresh database and a migrated one would not get the functions this "
        f"module says. Never edit the frozen copy in annotation/migrations/{name}.py: copy the "
        f"new SQL into a new migration {new}, by running\n\n"
        f"    .venv/bin/python manage.py queue_functions_migration\n\n"
        f"(it writes that file: QUEUE_FUNCTIONS_SQL and QUEUE_FUNCTIONS_DROP as literal "
        f"copies, forwards dropping {name}'s functions and creating the new ones, backwards "
        f"the opposite), then migrate and commit it.\n\n{diff}",
        pytrace=False,
    )


def test_queue_functions_migrations_carry_their_sql_instead_of_importing_it():
    found = installing_migrations()
    assert found and found[0][0] == "0005_queue_functions"
    for name, module in found:
        # Named in prose as the file to edit, never imported (in any spelling).
        source = inspect.getsource(module).replace("annotation/queue_functions_sql.py", "")
        assert "queue_functions_sql" not in source, f"{name} must not read the live module"
        create, drop = _frozen(module)
        assert create and all(isinstance(statement, str) for statement in create), name
        assert len(drop) == len(create) and all(s.startswith("DROP FUNCTION") for s in drop)


def test_the_command_writes_a_migration_with_a_literal_copy_of_the_live_sql(monkeypatch):
    latest, module = installing_migrations()[-1]
    create, drop = _frozen(module)
    monkeypatch.setattr(queue_functions_sql, "CREATE", create)
    monkeypatch.setattr(queue_functions_sql, "DROP", drop)
    with pytest.raises(CommandError, match=f"nothing to do: {latest}"):
        call_command("queue_functions_migration", dry_run=True, stdout=io.StringIO())

    edited = (create[0] + "-- an edit\n", *create[1:])
    monkeypatch.setattr(queue_functions_sql, "CREATE", edited)
    out = io.StringIO()
    call_command("queue_functions_migration", dry_run=True, stdout=out)
    text = out.getvalue()
    assert text == render_migration(edited, drop)
    assert "queue_functions_sql import" not in text and "import queue_functions_sql" not in text
    namespace: dict = {"__name__": "annotation.migrations.9999_written"}
    exec(compile(text, "written migration", "exec"), namespace)
    assert namespace["QUEUE_FUNCTIONS_SQL"] == edited
    assert namespace["QUEUE_FUNCTIONS_DROP"] == drop
    assert namespace["PREVIOUS"].__name__ == f"annotation.migrations.{latest}"
    leaf = _leaf()
    assert namespace["Migration"].dependencies[0] == ("annotation", leaf)
    assert next_migration_path().name == f"{int(leaf[:4]) + 1:04d}_queue_functions.py"


def _leaf() -> str:
    (_, name), = MigrationLoader(None, ignore_no_migrations=True).graph.leaf_nodes("annotation")
    return name


# What PostgreSQL has installed. ---------------------------------------------------------

@pytest.fixture
def postgresql(db) -> None:
    if connection.vendor != "postgresql":
        require_service("PostgreSQL", "the queue functions exist on PostgreSQL only; "
                                      "set DATABASE_URL=postgres://...")


def _installed() -> dict[tuple[str, str], str]:
    """The annotation_* functions of the current schema: (name, arguments) to definition."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT p.proname, pg_get_function_identity_arguments(p.oid), pg_get_functiondef(p.oid)"
            "  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
            " WHERE n.nspname = current_schema() AND p.proname LIKE 'annotation!_%' ESCAPE '!'"
        )
        return {(name, arguments): definition for name, arguments, definition in cursor}


def _drop_all() -> None:
    with connection.cursor() as cursor:
        for name, arguments in _installed():
            cursor.execute(f"DROP FUNCTION {name}({arguments})")


def _fresh(statements) -> dict[tuple[str, str], str]:
    """What a database that had none of the functions has after ``statements``."""
    savepoint = transaction.savepoint()
    try:
        _drop_all()
        with connection.cursor() as cursor:
            for statement in statements:
                cursor.execute(statement)
        return _installed()
    finally:
        transaction.savepoint_rollback(savepoint)


def _run_python(module, direction: str) -> None:
    (operation,) = [op for op in module.Migration.operations
                    if isinstance(op, migrations.RunPython)]
    code = operation.code if direction == "forwards" else operation.reverse_code
    with connection.schema_editor(atomic=False) as schema_editor:
        code(global_apps, schema_editor)


@pytest.mark.usefixtures("postgresql")
def test_the_test_database_has_the_functions_the_latest_migration_installs():
    name, module = installing_migrations()[-1]
    installed = _installed()
    assert installed, "no queue functions installed"
    assert installed == _fresh(module.QUEUE_FUNCTIONS_SQL), name
    assert installed == _fresh(queue_functions_sql.CREATE)


@pytest.mark.usefixtures("postgresql")
def test_each_queue_functions_migration_reverses_to_the_previous_frozen_sql():
    found = installing_migrations()
    for index, (name, module) in enumerate(found):
        before = _fresh(found[index - 1][1].QUEUE_FUNCTIONS_SQL) if index else {}
        after = _fresh(module.QUEUE_FUNCTIONS_SQL)
        savepoint = transaction.savepoint()
        try:
            _drop_all()
            with connection.cursor() as cursor:
                for statement in (found[index - 1][1].QUEUE_FUNCTIONS_SQL if index else ()):
                    cursor.execute(statement)
            _run_python(module, "forwards")
            assert _installed() == after, f"{name} forwards"
            _run_python(module, "backwards")
            assert _installed() == before, f"{name} backwards"
        finally:
            transaction.savepoint_rollback(savepoint)
