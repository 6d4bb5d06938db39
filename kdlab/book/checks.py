"""Static checks of a built book (no browser): what a reader would trip over, found in the HTML files.

    problems = check_site("_build/html")      # [] when the book is sound
    print(format_problems(problems))

* a page per notebook;
* no broken internal link (files and #anchors), for <a>, <link>, <script> and <img>;
* every image has alt text;
* offline: no page loads a script, style sheet, image or frame from the network (MathJax included);
* exercises: no hidden test (markers or their lines) in any page; every solution sits in a closed toggle;
* panels: a note on how to move each interactive panel in JupyterLab;
* launch links: each notebook page links to `make lab`, Colab and Binder built from the one repository URL.
"""
import html as html_lib
import re
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import nbformat

from ..assign import HIDDEN_TEST_MARKERS, SOLUTION_MARKERS, is_solution
from ..paths import REPO_ROOT
from ..runner import find_notebooks
from . import launch, panels, solutions

RESOURCE_ATTRS = {"a": "href", "link": "href", "script": "src", "img": "src", "iframe": "src", "source": "src"}
LOADED = {"link", "script", "img", "iframe", "source"}  # what a browser fetches by itself
SOLUTION_CLASS = "tag_" + solutions.SOLUTION_TAG  # myst-nb turns a cell's tags into classes


@dataclass(frozen=True)
class Problem:
    check: str
    page: str
    detail: str

    def __str__(self):
        return f"[{self.check}] {self.page}: {self.detail}"


class _Page(HTMLParser):
    """Links, images, ids, and the text outside and inside closed <details> of one HTML page."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.refs, self.images, self.ids = [], [], set()
        self.outside, self.closed_details = [], []
        self._details = []  # stack: is this <details> open?
        self._skip = 0      # inside <script>/<style>
        self.solutions = []  # per solution cell: {"visible": [...], "folded": [...]}
        self._divs = []      # stack: does this <div> open a solution cell?

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.add(attrs["id"])
        if tag == "a" and "name" in attrs:
            self.ids.add(attrs["name"])
        if tag in RESOURCE_ATTRS and attrs.get(RESOURCE_ATTRS[tag]):
            rel = attrs.get("rel") or ""
            loaded = tag in LOADED and not (tag == "link" and rel in ("canonical", "alternate"))
            self.refs.append((tag, attrs[RESOURCE_ATTRS[tag]], loaded, rel))
        if tag == "img":
            self.images.append(attrs)
        if tag == "details":
            self._details.append("open" in attrs)
        if tag in ("script", "style"):
            self._skip += 1
        if tag == "div":
            opens = SOLUTION_CLASS in (attrs.get("class") or "").split()
            self._divs.append(opens)
            if opens:
                self.solutions.append({"visible": [], "folded": []})

    def _in_solution(self):
        return any(self._divs)

    def handle_endtag(self, tag):
        if tag == "div" and self._divs:
            self._divs.pop()
        if tag == "details" and self._details:
            self._details.pop()
        if tag in ("script", "style") and self._skip:
            self._skip -= 1

    def handle_data(self, data):
        if self._skip:
            return
        folded = bool(self._details) and not all(self._details)
        (self.closed_details if folded else self.outside).append(data)
        if self._in_solution() and data.strip():
            self.solutions[-1]["folded" if folded else "visible"].append(data)


def parse(path):
    page = _Page()
    page.feed(Path(path).read_text(errors="replace"))
    return page


def html_pages(root):
    return sorted(p for p in Path(root).rglob("*.html") if "_static" not in p.parts)


def _is_external(url):
    return bool(re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", url)) or url.startswith("//")


def check_links(root, parsed):
    problems, root = [], Path(root)
    for path, page in parsed.items():
        name = str(path.relative_to(root))
        for tag, url, loaded, rel in page.refs:
            if loaded and (url.startswith(("http://", "https://", "//"))):
                problems.append(Problem("offline", name, f"<{tag}> loads {url} from the network"))
                continue
            if _is_external(url) or url.startswith("data:"):
                continue
            parts = urlsplit(url)
            target = (path.parent / unquote(parts.path)).resolve() if parts.path else path.resolve()
            if target.is_dir():
                target = target / "index.html"
            if not target.exists():
                problems.append(Problem("link", name, f"<{tag}> {url}: {target.relative_to(root.resolve()) if root.resolve() in target.parents else target} does not exist"))
                continue
            fragment = unquote(parts.fragment)
            if tag == "a" and fragment and target.suffix == ".html":
                target_page = parsed.get(target) or parse(target)
                if fragment not in target_page.ids:
                    problems.append(Problem("link", name, f"{url}: no element with id {fragment!r}"))
    return problems


def _says_nothing(alt, src):
    """True for a missing alt text, and for the one docutils writes when none is given: the file's name."""
    alt = (alt or "").strip()
    return not alt or alt == src or bool(re.fullmatch(r"\S+\.(png|jpe?g|gif|svg|webp)", alt))


def check_images(root, parsed):
    problems = []
    for path, page in parsed.items():
        for image in page.images:
            if _says_nothing(image.get("alt"), image.get("src")):
                problems.append(Problem("alt", str(path.relative_to(root)),
                                        f"<img src={image.get('src')!r}> has no alt text (alt={image.get('alt')!r})"))
    return problems


def _regions(source, markers):
    """(lines inside `markers` regions, lines outside them) of one cell's source."""
    inside_lines, outside_lines, inside = [], [], False
    for line in source.split("\n"):
        if markers[0] in line:
            inside = True
        elif markers[1] in line:
            inside = False
        else:
            (inside_lines if inside else outside_lines).append(line.strip())
    return inside_lines, outside_lines


def exercise_lines(notebook):
    """(hidden-test lines, [solution lines per solution cell]) that appear nowhere else in the notebook.

    Only such distinctive lines (12 characters or more) can prove a leak: a line like `with torch.no_grad():`
    may also be in a visible cell."""
    hidden, solutions_found, public = [], [], set()
    for cell in notebook.cells:
        inside_hidden, rest = _regions(cell.source, HIDDEN_TEST_MARKERS)
        hidden += inside_hidden
        if is_solution(cell):
            inside_solution, around = _regions("\n".join(rest), SOLUTION_MARKERS)
            solutions_found.append(inside_solution)
            public.update(around)
        else:
            public.update(rest)

    def distinctive(lines):
        return [line for line in lines if len(line) >= 12 and line not in public]

    return distinctive(hidden), [distinctive(lines) for lines in solutions_found]


def _squash(text):
    return re.sub(r"\s+", " ", html_lib.unescape(text))


def check_notebook_pages(root, parsed, notebooks_dir, url=None):
    problems, root = [], Path(root)
    url = url or launch.repository_url()
    for source in find_notebooks(notebooks_dir):
        page_path = root / "notebooks" / f"{source.stem}.html"
        name = str(page_path.relative_to(root))
        if not page_path.is_file():
            problems.append(Problem("pages", name, f"no page for {source.name}"))
            continue
        page = parsed.get(page_path) or parse(page_path)
        notebook = nbformat.read(str(source), as_version=4)
        outside, folded = _squash("".join(page.outside)), _squash("".join(page.closed_details))
        everything = outside + " " + folded
        for marker in (*HIDDEN_TEST_MARKERS, *SOLUTION_MARKERS):
            if marker in everything:
                problems.append(Problem("exercises", name, f"the marker {marker!r} is in the page"))
        hidden_lines, solution_lines = exercise_lines(notebook)
        for line in hidden_lines:
            if _squash(line) in everything:
                problems.append(Problem("exercises", name, f"a hidden test is in the page: {line[:80]!r}"))
        if len(page.solutions) != len(solution_lines):
            problems.append(Problem("exercises", name, f"{len(solution_lines)} solution cells in the notebook, "
                                    f"{len(page.solutions)} solution toggles in the page"))
        for number, cell in enumerate(page.solutions, start=1):
            if cell["visible"] or not cell["folded"]:
                shown = _squash("".join(cell["visible"])).strip()
                problems.append(Problem("exercises", name, f"solution {number} is visible without its toggle: {shown[:80]!r}"))
        for lines in solution_lines:
            if lines and not any(_squash(line) in folded for line in lines):
                problems.append(Problem("exercises", name, f"a solution is missing from the page: {lines[0][:80]!r}"))
        expected_notes = sum(panels.is_panel_cell(cell) for cell in notebook.cells)
        notes = outside.count(panels.NOTE_HEAD)
        if notes != expected_notes:
            problems.append(Problem("panels", name, f"{expected_notes} interactive panels in the notebook, {notes} "
                                    "notes on how to move them in the page"))
        hrefs = {ref for tag, ref, _, _ in page.refs if tag == "a"}
        for expected in (launch.colab_url(source.name, url), launch.binder_url(source.name, url)):
            if html_lib.unescape(expected) not in {html_lib.unescape(h) for h in hrefs}:
                problems.append(Problem("launch", name, f"no link to {expected}"))
        if "make lab" not in outside:
            problems.append(Problem("launch", name, "the page does not say how to run it locally (make lab)"))
    return problems


def check_site(root, notebooks_dir=REPO_ROOT / "notebooks", url=None):
    """Every problem found in the built site at `root` (an empty list when there is none)."""
    root = Path(root)
    if not (root / "index.html").is_file():
        return [Problem("pages", "index.html", f"no book at {root}: run make book")]
    parsed = {path.resolve(): parse(path) for path in html_pages(root)}
    parsed_by_path = {Path(p): page for p, page in parsed.items()}
    root = root.resolve()
    return (check_notebook_pages(root, parsed_by_path, notebooks_dir, url) + check_links(root, parsed_by_path)
            + check_images(root, parsed_by_path))


def format_problems(problems):
    if not problems:
        return "book checks: no problem (pages, links, alt text, offline assets, exercises, panel notes, launch links)"
    return f"book checks: {len(problems)} problem(s)\n" + "\n".join(f"  {p}" for p in problems)
