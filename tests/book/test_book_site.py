"""The smoke book, built as `make book PROFILE=smoke` builds it, read as a reader would: a page per notebook,
no broken internal link, alt text on every image, nothing loaded from the network, no hidden test and no
open solution; every page in headless Chromium without console errors; axe-core on three pages."""
import shutil
import time

import nbformat
import pytest

from kdlab.book import browser, checks
from kdlab.book.build import BUILD_DIR, build
from kdlab.runner import find_notebooks

from .conftest import ROOT, TEST_BUILD

needs_chromium = pytest.mark.skipif(not browser.available(), reason="Debian's chromium or playwright is missing")


def test_a_page_per_notebook_and_no_problem_in_the_site(smoke_book):
    html = smoke_book.html
    for path in find_notebooks(ROOT / "notebooks"):
        assert (html / "notebooks" / f"{path.stem}.html").is_file()
    pages = checks.html_pages(html)
    print(f"{len(pages)} HTML pages ({len(find_notebooks(ROOT / 'notebooks'))} notebooks)")
    problems = checks.check_site(html)
    assert not problems, checks.format_problems(problems)
    assert smoke_book.warnings == 0, (TEST_BUILD / "sphinx-warnings.log").read_text()


@needs_chromium
@pytest.mark.browser
def test_every_page_loads_in_chromium_and_axe_finds_no_serious_violation(smoke_book):
    results = browser.check_pages(smoke_book.html)
    report = browser.format_results(results)
    print(report)
    assert len(results) >= len(find_notebooks(ROOT / "notebooks")) + 5
    assert all(r.ok for r in results), report
    assert sum(r.axe_run for r in results) == len(browser.AXE_PAGES), report


def test_a_prose_only_change_rebuilds_in_seconds_and_executes_nothing(smoke_book, tmp_path):
    notebooks = tmp_path / "notebooks"
    shutil.copytree(ROOT / "notebooks", notebooks)
    changed = notebooks / "01_knowledge_distillation.ipynb"
    nb = nbformat.read(str(changed), as_version=4)
    first_markdown = next(c for c in nb.cells if c.cell_type == "markdown")
    first_markdown.source += "\n\nA sentence added for the warm-rebuild test."
    nbformat.write(nb, str(changed))
    try:
        started = time.perf_counter()
        report = build("smoke", build_dir=TEST_BUILD, cache_dir=BUILD_DIR / "executed", notebooks_dir=notebooks,
                       log=print)
        seconds = time.perf_counter() - started
        print(f"warm rebuild after a Markdown-only change: {seconds:.1f} s; {report.summary()}")
        assert set(report.notebooks.values()) == {"cached"}, report.notebooks
        assert report.staged_changed == ["notebooks/01_knowledge_distillation.ipynb"]
        assert "A sentence added for the warm-rebuild test." in (
            report.html / "notebooks" / "01_knowledge_distillation.html").read_text()
        assert seconds < 60
    finally:  # the session's book is the committed text again
        build("smoke", build_dir=TEST_BUILD, cache_dir=BUILD_DIR / "executed", log=print)


def test_every_launch_link_of_the_site_uses_the_one_repository_url(smoke_book):
    from kdlab.book import launch

    owner_name = launch.github_path(launch.repository_url())
    links = [ref for path in checks.html_pages(smoke_book.html) for tag, ref, _, _ in checks.parse(path).refs
             if tag == "a" and ("colab.research.google.com" in ref or "mybinder.org" in ref)]
    assert len(links) == 2 * len(find_notebooks(ROOT / "notebooks"))
    assert all(f"/{owner_name}/" in link for link in links), links
