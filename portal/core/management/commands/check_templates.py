"""`manage.py check_templates`: compile every template of the project and its apps.

Django compiles a template only when a view first renders it, so a syntax error in a page
nobody opened in the tests would reach production. This loads each one through the engine
(partials included) and exits 1 listing every template that does not compile, or that opens a
`{#` comment it does not close on the same line: Django's short comments are one line long, and
the rest of a longer one is printed on the page as text.
"""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.template import TemplateSyntaxError, engines
from django.template.loader import get_template


def template_files(engine) -> dict[str, Path]:
    files = {}
    for directory in engine.template_dirs:
        root = Path(directory)
        if root.is_dir():
            for path in root.rglob("*"):
                if path.suffix in {".html", ".txt"}:
                    files.setdefault(str(path.relative_to(root)), path)
    return files


def unclosed_comments(name: str, path: Path) -> list[str]:
    return [
        f"{name}:{number}: a {{# comment must close on its line (use {{% comment %}} for more)"
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if "{#" in line and "#}" not in line[line.index("{#") :]
    ]


def template_names(engine) -> list[str]:
    names = set()
    for directory in engine.template_dirs:
        root = Path(directory)
        if not root.is_dir():
            continue
        names.update(str(path.relative_to(root)) for path in root.rglob("*") if path.suffix in {".html", ".txt"})
    return sorted(names)


class Command(BaseCommand):
    help = "Compile every template; fail listing those with syntax errors."

    def handle(self, *args, **options):
        engine = engines["django"]
        names = template_names(engine)
        broken = [problem for name, path in template_files(engine).items() for problem in unclosed_comments(name, path)]
        for name in names:
            try:
                get_template(name)
            except TemplateSyntaxError as error:
                broken.append(f"{name}: {error}")
        if broken:
            raise CommandError("templates that do not compile:\n  " + "\n  ".join(broken))
        self.stdout.write(f"{len(names)} templates compile")
