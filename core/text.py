"""The one check of text that comes in from outside, used wherever text enters.

A string can be valid Python and still be refused by a database: PostgreSQL stores no NUL
character in ``text`` or ``jsonb``, and no encoder writes a lone surrogate (``"\\ud800"``,
which Python's ``json`` module reads without complaint) as UTF-8. Let either through and
the insert fails later, far from the request, taking good rows of the same batch with it.
So the edges (predict and feedback instances, labels, project names, import rows) call
``text_check`` / ``json_check`` and answer a 400 naming the field; the few writers that
must store whatever arrived (prediction logs) use ``text_sanitize`` / ``json_sanitize``.
No Django imports: the import readers use it too.
"""
from __future__ import annotations

import re

from core.errors import DomainError

# Deeper JSON than this is refused: no instance, row or label needs it, and walking it
# costs recursion.
MAX_DEPTH = 32

_REFUSED = re.compile("[\x00\ud800-\udfff]")
REPLACEMENT = "\ufffd"


class InvalidText(DomainError):
    """Text that cannot be stored: a NUL, invalid Unicode, too long or nested too deep."""

    code = "invalid_text"


def text_problem(value: str) -> str | None:
    """Why ``value`` cannot be stored as text, or None when it can."""
    if "\x00" in value:
        return "contains a NUL character (\\u0000)"
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            return (f"is not valid Unicode (a lone surrogate "
                    f"U+{ord(value[exc.start]):04X} at character {exc.start})")
    return None


def text_check(value: object, *, field: str, max_chars: int | None = None,
               detail: dict | None = None) -> str:
    """Return ``value`` if it is a string that can be stored, else raise ``InvalidText``
    (400) whose message starts with ``field``."""
    if not isinstance(value, str):
        raise InvalidText(f"{field}: expected a string", detail={**(detail or {}), "field": field})
    if max_chars is not None and len(value) > max_chars:
        raise InvalidText(f"{field}: {len(value)} characters, more than {max_chars}",
                          detail={**(detail or {}), "field": field, "max_chars": max_chars})
    problem = text_problem(value)
    if problem is not None:
        raise InvalidText(f"{field}: {problem}", detail={**(detail or {}), "field": field})
    return value


def json_problem(value: object, *, field: str, max_depth: int = MAX_DEPTH
                 ) -> tuple[str, str] | None:
    """Return (path, why) of the first string (key or value) of a JSON value that cannot be
    stored, or of where it nests deeper than ``max_depth``; None when all is well."""
    stack = [(value, field, 0)]
    while stack:
        item, path, depth = stack.pop()
        if isinstance(item, str):
            problem = text_problem(item)
            if problem is not None:
                return path, problem
        elif isinstance(item, (dict, list, tuple)):
            if depth >= max_depth:
                return path, f"nests deeper than {max_depth} levels"
            if isinstance(item, dict):
                children = []
                for key, child in item.items():
                    if isinstance(key, str):
                        problem = text_problem(key)
                        if problem is not None:
                            return path, f"has a key that {problem}"
                    children.append((child, f"{path}.{key}", depth + 1))
            else:
                children = [(child, f"{path}[{i}]", depth + 1) for i, child in enumerate(item)]
            stack.extend(reversed(children))
    return None


def json_check(value: object, *, field: str, max_depth: int = MAX_DEPTH,
               detail: dict | None = None) -> object:
    """Return ``value`` if every string in it can be stored and it nests at most
    ``max_depth`` deep, else raise ``InvalidText`` naming the first bad path."""
    found = json_problem(value, field=field, max_depth=max_depth)
    if found is not None:
        path, problem = found
        raise InvalidText(f"{path}: {problem}", detail={**(detail or {}), "field": path})
    return value


def text_sanitize(value: str) -> str:
    """``value`` with NUL characters and lone surrogates replaced by U+FFFD."""
    return _REFUSED.sub(REPLACEMENT, value) if text_problem(value) else value


def json_sanitize(value: object, *, max_depth: int = MAX_DEPTH) -> object:
    """A copy of a JSON value with every string (keys too) sanitized; deeper than
    ``max_depth`` becomes None."""
    if isinstance(value, str):
        return text_sanitize(value)
    if isinstance(value, dict):
        if max_depth <= 0:
            return None
        return {text_sanitize(str(k)): json_sanitize(v, max_depth=max_depth - 1)
                for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        if max_depth <= 0:
            return None
        return [json_sanitize(v, max_depth=max_depth - 1) for v in value]
    return value
