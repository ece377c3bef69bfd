"""Reply texts: Jinja2 templates kept as data in replies/, checked when privbot starts."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

# Every template the code renders; a missing or broken one stops start-up, naming the file.
REQUIRED = ("acknowledge.txt.j2", "followup.txt.j2")


class RepliesError(ValueError):
    """A reply template is missing or broken; the message names the file."""


@dataclass(frozen=True)
class Replies:
    folder: Path
    env: jinja2.Environment

    def render(self, template: str, /, **context: Any) -> str:
        text = self.env.get_template(template).render(**context)
        # Templates are written for reading; mail wants no trailing blanks, one final newline.
        lines = [line.rstrip() for line in text.strip("\n").splitlines()]
        return "\n".join(lines) + "\n"


def load_replies(folder: Path) -> Replies:
    if not folder.is_dir():
        raise RepliesError(f"{folder}: replies folder not found")
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(folder)),
        undefined=jinja2.StrictUndefined,
        autoescape=False,  # plain-text mail, never HTML
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    for name in REQUIRED:
        path = folder / name
        if not path.is_file():
            raise RepliesError(f"{path}: required reply template is missing")
    for name in env.list_templates(extensions=["j2"]):
        try:
            env.get_template(name)
        except jinja2.TemplateSyntaxError as exc:
            raise RepliesError(f"{folder / name}:{exc.lineno}: {exc.message}") from None
    return Replies(folder, env)
