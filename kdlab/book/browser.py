"""The built book in headless Chromium (Debian's /usr/bin/chromium through Playwright, never
`playwright install`): every page loads from file:// with no console error and no network request, and
axe-core reports no serious or critical WCAG 2.x A/AA violation on the pages it is run on.

axe-core is injected from the file the PyPI package `axe-playwright-python` ships (`axe.min.js`), not from
a CDN. A violation the kit cannot fix in its own pages goes in ACCEPTED with the reason; it is then
reported, not failed.
"""
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
SERIOUS = ("serious", "critical")
AXE_PAGES = ("index.html", "notebooks/01_knowledge_distillation.html", "book/reproduced.html")
# rule id: why the kit leaves it (shown in every report)
ACCEPTED = {}


@dataclass
class PageResult:
    page: str
    console_errors: list = field(default_factory=list)
    network: list = field(default_factory=list)
    violations: list = field(default_factory=list)   # (rule, impact, nodes, help) serious or critical
    accepted: list = field(default_factory=list)
    minor: list = field(default_factory=list)        # (rule, impact, nodes) moderate or minor
    axe_run: bool = False

    @property
    def ok(self):
        return not (self.console_errors or self.network or self.violations)


def axe_script():
    import axe_playwright_python

    path = Path(axe_playwright_python.__file__).with_name("axe.min.js")
    if not path.is_file():
        raise FileNotFoundError(f"axe-core not found at {path}: install the book extra")
    return path


def available():
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return False
    return Path(CHROMIUM).exists()


def _wait_for_mathjax(page):
    """Wait until MathJax (if the page loads it) has typeset the page."""
    page.evaluate("() => (window.MathJax && MathJax.startup && MathJax.startup.promise) || null")


def _visit(context, root, name, run_axe, screenshot=None):
    result = PageResult(name)
    page = context.new_page()
    page.on("console", lambda m: result.console_errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: result.console_errors.append(str(e)))
    page.on("request", lambda r: result.network.append(r.url) if not r.url.startswith(("file:", "data:", "blob:",
                                                                                        "about:")) else None)
    page.goto((Path(root) / name).resolve().as_uri(), wait_until="load")
    _wait_for_mathjax(page)
    page.wait_for_timeout(200)
    if screenshot:
        Path(screenshot).parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(screenshot), full_page=False)
    if run_axe:
        page.add_script_tag(path=str(axe_script()))
        report = page.evaluate("tags => axe.run(document, {runOnly: {type: 'tag', values: tags}, preload: false})", AXE_TAGS)
        result.axe_run = True
        for v in report["violations"]:
            row = (v["id"], v["impact"], len(v["nodes"]), v["help"])
            if v["id"] in ACCEPTED:
                result.accepted.append(row)
            elif v["impact"] in SERIOUS:
                result.violations.append(row)
            else:
                result.minor.append(row[:3])
    page.close()
    return result


def check_pages(root, pages=None, axe_pages=AXE_PAGES, screenshots=None):
    """A PageResult per page (default: every page of the site); axe-core runs on `axe_pages`.

    `screenshots`: {page: png path} to save the first screen of those pages."""
    from playwright.sync_api import sync_playwright

    root = Path(root)
    if pages is None:
        pages = sorted(str(p.relative_to(root)) for p in root.rglob("*.html")
                       if "_static" not in p.parts and p.name not in ("genindex.html", "search.html"))
    screenshots = screenshots or {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        context = browser.new_context(viewport={"width": 1280, "height": 900}, service_workers="block")
        try:
            return [_visit(context, root, name, name in axe_pages, screenshots.get(name)) for name in pages]
        finally:
            context.close()
            browser.close()


def format_results(results):
    lines = [f"browser: {sum(r.ok for r in results)} of {len(results)} pages load with no console error and "
             "no network request" + ("" if all(r.ok for r in results) else "; failing:")]
    for r in results:
        if r.console_errors:
            lines.append(f"  {r.page}: console errors: {r.console_errors[:3]}")
        if r.network:
            lines.append(f"  {r.page}: network requests: {r.network[:3]}")
    for r in (r for r in results if r.axe_run):
        serious = ", ".join(f"{rule} ({impact}, {n} nodes)" for rule, impact, n, _ in r.violations) or "none"
        lines.append(f"  axe {r.page}: serious/critical WCAG A/AA violations: {serious}")
        for rule, impact, n, _ in r.accepted:
            lines.append(f"    accepted {rule} ({impact}, {n} nodes): {ACCEPTED[rule]}")
        if r.minor:
            lines.append("    moderate/minor: " + ", ".join(f"{rule} ({impact}, {n})" for rule, impact, n in r.minor))
    return "\n".join(lines)


def results_json(results):
    return json.dumps([r.__dict__ for r in results], indent=1)
