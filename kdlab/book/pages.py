"""The book's text pages, staged at build time from the files that already say it (nothing copied by hand).

The README and `docs/**/*.md` are staged as they are (same relative layout, so their links keep working);
the pages setup, profiles and bad inputs are the README's sections of those names, cut out when the book
is built; `docs/book/*.md` are the book's own pages (the index).
"""
import re
from pathlib import Path

from ..errors import KdlabError
from ..paths import REPO_ROOT

BOOK_DIR = REPO_ROOT / "docs" / "book"
# page name: (title, README sections it is made of, in order)
SECTION_PAGES = {
    "setup": ("Setup", ("Two commands", "CPU threads and GPU")),
    "profiles": ("Run profiles", ("Run profiles",)),
    "bad-inputs": ("Bad inputs", ("Bad input",)),
}


def readme_sections(text):
    """{title: text} of every `## ` section of a Markdown file (code blocks are not mistaken for headings)."""
    sections, title, body, fenced = {}, None, [], False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        if not fenced and re.match(r"^## ", line):
            if title is not None:
                sections[title] = "\n".join(body).strip()
            title, body = line[3:].strip(), []
        elif title is not None:
            body.append(line)
    if title is not None:
        sections[title] = "\n".join(body).strip()
    return sections


def section_page(title, names, sections):
    missing = [name for name in names if name not in sections]
    if missing:
        raise KdlabError(f"README.md has no section {missing[0]!r}: the book's page {title!r} is made of it "
                         "(kdlab/book/pages.py, SECTION_PAGES)")
    parts = [f"# {title}", "", f"*From the README, section{'s' if len(names) > 1 else ''} "
             + ", ".join(f"“{name}”" for name in names) + ".*", ""]
    for name in names:
        if len(names) > 1:
            parts += [f"## {name}", ""]
        parts += [sections[name], ""]
    return "\n".join(parts)


def text_pages(root=REPO_ROOT):
    """{relative path in the book's source: text} of every text page."""
    root = Path(root)
    readme = (root / "README.md").read_text()
    pages = {"README.md": readme}
    for path in sorted((root / "docs").rglob("*.md")):
        relative = path.relative_to(root)
        if relative.parts[:2] == ("docs", "book"):
            pages[str(relative.relative_to("docs/book"))] = path.read_text()
        else:
            pages[str(relative)] = path.read_text()
    sections = readme_sections(readme)
    for name, (title, names) in SECTION_PAGES.items():
        pages[f"book/{name}.md"] = section_page(title, names, sections)
    return pages
