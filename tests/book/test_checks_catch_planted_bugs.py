"""The book's checks fail on planted bugs: each bug is put into a copy of the built smoke book and the
check that guards against it must report it (and only a copy is touched)."""
import re
import shutil

import nbformat
import pytest

from kdlab.book import browser, checks

from .conftest import ROOT

NB01 = "notebooks/01_knowledge_distillation.html"


def _hidden_line():
    nb = nbformat.read(str(ROOT / "notebooks" / "01_knowledge_distillation.ipynb"), as_version=4)
    return checks.exercise_lines(nb)[0][0]


def _sub(text, pattern, replacement):
    new, count = re.subn(pattern, replacement, text, count=1)
    assert count == 1, f"the plant found no {pattern!r} to change"
    return new


PLANTS = {  # name: (page, change of its HTML, the check that must fail, words in its message)
    "image without alt text": (NB01, lambda t: _sub(t, r'(<img [^>]*?)alt="[^"]*"', r'\1alt=""'), "alt", "no alt"),
    "alt text is the file name": (NB01, lambda t: _sub(t, r'<img alt="[^"]*" src="([^"]*)"', r'<img alt="\1" src="\1"'), "alt",
                                  "no alt"),
    "broken internal link": ("index.html", lambda t: t.replace("</main>", '<a href="docs/nope.html">x</a></main>', 1),
                             "link", "does not exist"),
    "broken anchor": (NB01, lambda t: t.replace("</main>", '<a href="#no-such-section">x</a></main>', 1), "link",
                      "no element with id"),
    "hidden test leaked": (NB01, lambda t: t.replace("</main>", f"<pre>{_hidden_line()}</pre></main>", 1),
                           "exercises", "hidden test"),
    "solution left visible": (NB01, lambda t: _sub(t, r'<details class="admonition hide above-input">',
                                                   '<details class="admonition hide above-input" open>'),
                              "exercises", "visible without its toggle"),
    "solution toggle missing": (NB01, lambda t: t.replace("tag_kdlab-solution", "tag_other", 1), "exercises",
                                "solution toggles"),
    "CDN MathJax": (NB01, lambda t: _sub(t, r'src="[^"]*_static/mathjax/tex-chtml.js[^"]*"',
                                         'src="https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-chtml.js"'),
                    "offline", "from the network"),
    "panel note missing": (NB01, lambda t: t.replace("Interactive panel, shown in its final static state", "A panel", 1),
                           "panels", "notes on how to move them"),
    "launch link to another repository": ("notebooks/02_maml.html",
                                          lambda t: t.replace("github/kdlab/kdlab", "github/someone/else"),
                                          "launch", "no link to https://colab"),
}


@pytest.fixture(scope="module")
def site_copy(smoke_book, tmp_path_factory):
    copy = tmp_path_factory.mktemp("book") / "html"
    shutil.copytree(smoke_book.html, copy, ignore=shutil.ignore_patterns("mathjax"))
    shutil.copytree(smoke_book.html / "_static" / "mathjax", copy / "_static" / "mathjax")
    return copy


@pytest.mark.parametrize("name", PLANTS)
def test_each_planted_bug_is_reported(site_copy, name):
    page, change, check, words = PLANTS[name]
    path = site_copy / page
    original = path.read_text()
    path.write_text(change(original))
    try:
        problems = checks.check_site(site_copy)
    finally:
        path.write_text(original)
    caught = [p for p in problems if p.check == check and p.page == page and words in p.detail]
    assert caught, f"{name}: not reported; got {checks.format_problems(problems)}"
    assert not checks.check_site(site_copy), "the copy is clean again"


def test_a_missing_notebook_page_is_reported(site_copy):
    page = site_copy / "notebooks" / "05_mmkd.html"
    original = page.read_bytes()
    page.unlink()
    try:
        problems = checks.check_site(site_copy)
    finally:
        page.write_bytes(original)
    assert any(p.check == "pages" and "05_mmkd" in p.page for p in problems)


@pytest.mark.browser
@pytest.mark.skipif(not browser.available(), reason="Debian's chromium or playwright is missing")
def test_the_browser_check_reports_console_errors_network_requests_and_axe_violations(site_copy):
    path = site_copy / "index.html"
    original = path.read_text()
    path.write_text(original.replace("</main>", '<script>console.error("planted error")</script>'
                                     '<img src="http://192.0.2.1/x.png" alt="x">'
                                     '<p style="color:#d0d0d0;background:#ffffff">planted low contrast</p></main>', 1))
    try:
        [result] = browser.check_pages(site_copy, pages=["index.html"], axe_pages=("index.html",))
    finally:
        path.write_text(original)
    assert any("planted error" in e for e in result.console_errors)
    assert any(url.startswith("http://192.0.2.1") for url in result.network)
    assert any(rule == "color-contrast" for rule, *_ in result.violations)
    assert not result.ok
