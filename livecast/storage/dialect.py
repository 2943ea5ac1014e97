"""SQL text translation between the repositories' one style and a driver's own."""

from __future__ import annotations

import re

_PLACEHOLDER = re.compile(r"'[^']*'|\?")


def numbered_placeholders(sql: str) -> str:
    """``?`` placeholders (outside string literals) as PostgreSQL's ``$1, $2, ...``."""
    counter = 0

    def replace(match: re.Match[str]) -> str:
        nonlocal counter
        if match.group(0) != "?":
            return match.group(0)
        counter += 1
        return f"${counter}"

    return _PLACEHOLDER.sub(replace, sql)


def split_script(script: str) -> list[str]:
    """The statements of a migration script (no ``;`` inside statements)."""
    return [s.strip() for s in script.split(";") if s.strip()]
