"""The settings' reference, made from their declarations: the table in
docs/configuration.md (`mediagate settings --markdown` prints it; a test keeps the two
equal) and the variables an example environment may name."""

from __future__ import annotations

from typing import Any

from mediagate.config.fields import REQUIRED, Derived, declarations
from mediagate.config.sections import SECTIONS


def variables() -> list[str]:
    return [d.variable for section in SECTIONS.values() for _, d in declarations(section)]


def markdown_table() -> str:
    rows = ["| variable | default | meaning |", "| --- | --- | --- |"]
    for section in SECTIONS.values():
        for _, declaration in declarations(section):
            default = _shown(declaration.default)
            rows.append(f"| `{declaration.variable}` | {default} | {declaration.meaning} |")
    return "\n".join(rows) + "\n"


def _shown(default: Any) -> str:
    if default is REQUIRED:
        return "required"
    if isinstance(default, Derived):
        return default.shown
    if default is None or default == ():
        return "unset"
    if isinstance(default, bool):
        return f"`{str(default).lower()}`"
    if isinstance(default, tuple):
        return f"`{','.join(str(item) for item in default)}`"
    if isinstance(default, float) and default.is_integer():
        return f"`{int(default)}`"
    return f"`{default}`"
