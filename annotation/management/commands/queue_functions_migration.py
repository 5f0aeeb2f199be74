"""Write the migration that installs the queue functions as annotation/queue_functions_sql.py has them.

Every migration that installs the PL/pgSQL queue functions carries a frozen copy of what
it installs: module constants ``QUEUE_FUNCTIONS_SQL`` (the CREATE statements) and
``QUEUE_FUNCTIONS_DROP`` (the DROP statements that remove them), never an import of the
live module. A fresh database and a migrated one thus get the same functions, whatever
the live module says later. tests/annotation/test_queue_functions_frozen.py fails while
the live module differs from the latest such migration; this command writes the next one:

    .venv/bin/python manage.py queue_functions_migration [--name queue_functions] [--dry-run]

The new migration drops what the previous one installed and creates the new text; its
reverse drops the new functions and creates the previous migration's frozen text again.
"""
from __future__ import annotations

import ast
import re
import sys
from pathlib import Path
from types import ModuleType

from django.core.management.base import BaseCommand, CommandError
from django.db.migrations.loader import MigrationLoader

APP = "annotation"
FROZEN = "QUEUE_FUNCTIONS_SQL"  # the constant that marks a migration as installing them


def installing_migrations() -> list[tuple[str, ModuleType]]:
    """The annotation migrations that define ``QUEUE_FUNCTIONS_SQL``, in the order they run."""
    loader = MigrationLoader(None, ignore_no_migrations=True)
    found = []
    for app, name in loader.graph.forwards_plan((APP, _leaf(loader))):
        module = sys.modules[type(loader.graph.nodes[app, name]).__module__]
        if app == APP and hasattr(module, FROZEN):
            found.append((name, module))
    return found


def _leaf(loader: MigrationLoader) -> str:
    leaves = loader.graph.leaf_nodes(APP)
    if len(leaves) != 1:
        raise CommandError(f"{APP} has {len(leaves)} latest migrations "
                           f"({', '.join(name for _, name in leaves)}): merge them first")
    return leaves[0][1]


def next_migration_path(name: str = "queue_functions") -> Path:
    """Where the next annotation migration named ``name`` goes (the number after the leaf)."""
    leaf = _leaf(MigrationLoader(None, ignore_no_migrations=True))
    number = int(re.match(r"\d+", leaf).group()) + 1
    return Path(__file__).resolve().parents[2] / "migrations" / f"{number:04d}_{name}.py"


def python_literal(text: str) -> str:
    """``text`` as a readable Python literal: a raw triple-quoted string where that is exact."""
    if "\n" not in text:
        return repr(text)
    for quote in ('"""', "'''"):
        candidate = f"r{quote}{text}{quote}"
        try:
            if ast.literal_eval(candidate) == text:
                return candidate
        except SyntaxError:
            pass
    return repr(text)


def _tuple(statements) -> str:
    return "".join(f"    {python_literal(statement)},\n" for statement in statements)


TEMPLATE = '''"""Install the queue functions as annotation/queue_functions_sql.py has them now (PostgreSQL only).

Written by ``manage.py queue_functions_migration``. QUEUE_FUNCTIONS_SQL and
QUEUE_FUNCTIONS_DROP are a frozen copy: never edit them (a database that ran this migration
would not see the edit); edit annotation/queue_functions_sql.py and write a new migration.
Forwards drops the functions {previous} installed and creates these;
backwards drops these and creates {previous}'s again.
"""
import importlib

from django.db import migrations

PREVIOUS = importlib.import_module("annotation.migrations.{previous}")

QUEUE_FUNCTIONS_SQL = (
{create})

QUEUE_FUNCTIONS_DROP = (
{drop})


def _run(*groups):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor != "postgresql":
            return  # other databases keep the Python paths of annotation.services
        for statements in groups:
            for statement in statements:
                schema_editor.execute(statement, params=None)  # no placeholders: % is literal

    return run


class Migration(migrations.Migration):

    dependencies = [
        ("annotation", "{annotation_leaf}"),
        ("learning", "{learning_leaf}"),  # the functions read learning tables too
    ]

    operations = [
        migrations.RunPython(
            _run(PREVIOUS.QUEUE_FUNCTIONS_DROP, QUEUE_FUNCTIONS_SQL),
            _run(QUEUE_FUNCTIONS_DROP, PREVIOUS.QUEUE_FUNCTIONS_SQL),
        ),
    ]
'''


def render_migration(create, drop) -> str:
    """The text of the next migration, installing ``create`` (undone by ``drop``)."""
    loader = MigrationLoader(None, ignore_no_migrations=True)
    previous = installing_migrations()[-1][0]
    return TEMPLATE.format(
        previous=previous, create=_tuple(create), drop=_tuple(drop),
        annotation_leaf=_leaf(loader),
        learning_leaf=loader.graph.leaf_nodes("learning")[0][1],
    )


class Command(BaseCommand):
    help = ("Write a new annotation migration with a frozen copy of the queue functions' SQL "
            "(annotation/queue_functions_sql.py), after that module was edited.")

    def add_arguments(self, parser):
        parser.add_argument("--name", default="queue_functions",
                            help="The migration's name after its number.")
        parser.add_argument("--dry-run", action="store_true",
                            help="Print the migration instead of writing it.")

    def handle(self, *args, name, dry_run, **options):
        from annotation import queue_functions_sql as live

        latest, module = installing_migrations()[-1]
        if (tuple(live.CREATE), tuple(live.DROP)) == (
                tuple(module.QUEUE_FUNCTIONS_SQL), tuple(module.QUEUE_FUNCTIONS_DROP)):
            raise CommandError(f"nothing to do: {latest} already installs this SQL")
        text = render_migration(live.CREATE, live.DROP)
        if dry_run:
            self.stdout.write(text, ending="")
            return
        path = next_migration_path(name)
        path.write_text(text, encoding="utf-8")
        self.stderr.write(f"wrote {path}")
