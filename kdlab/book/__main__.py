"""`python -m kdlab.book build|check|bootstrap`: build the course book, check a built one, or write the
notebooks' Colab cell.

    python -m kdlab.book build --profile smoke          # _build/html/
    python -m kdlab.book check _build/html --browser    # static checks, then Chromium + axe-core
    python -m kdlab.book bootstrap                      # (re)write the notebooks' Colab/Binder first cell
"""
import argparse
import sys
import time
from pathlib import Path

from ..errors import KdlabError


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m kdlab.book", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="execute (or take from the cache) every notebook and render the site")
    b.add_argument("--profile", default="class", help="smoke | class | full (default: class)")
    b.add_argument("--workers", type=int, default=2, help="notebooks executed at a time (default 2)")
    b.add_argument("--fresh", action="store_true", help="execute every notebook again, ignoring the cache")
    b.add_argument("--check", action="store_true", help="check the built site afterwards (static checks)")
    c = sub.add_parser("check", help="check a built site: pages, links, alt text, offline assets, hidden tests")
    c.add_argument("html", nargs="?", type=Path, default=None, help="the built site (default: _build/html)")
    c.add_argument("--browser", action="store_true", help="also load every page in Chromium and run axe-core")
    n = sub.add_parser("bootstrap", help="insert or update the Colab/Binder first cell of every notebook "
                                         "(from the repository URL in pyproject.toml)")
    n.add_argument("notebooks", nargs="?", type=Path, default=None, help="folder of NN_*.ipynb (default: notebooks/)")
    args = parser.parse_args(argv)
    if args.command == "bootstrap":
        from ..paths import REPO_ROOT
        from .bootstrap import write_all

        changed = write_all(args.notebooks or REPO_ROOT / "notebooks")
        print(f"bootstrap cell written into {len(changed)} notebook(s): {', '.join(changed) or 'none changed'}")
        return 0
    try:
        if args.command == "build":
            from .build import build

            started = time.perf_counter()
            report = build(args.profile, workers=args.workers, fresh=args.fresh)
            print(report.summary())
            print(f"built in {time.perf_counter() - started:.1f} s: open {report.html / 'index.html'}")
            html = report.html
            if not args.check:
                return 0
        else:
            from .build import BUILD_DIR

            html = args.html or BUILD_DIR / "html"
        from . import checks

        problems = checks.check_site(html)
        print(checks.format_problems(problems))
        if args.command == "check" and args.browser:
            from . import browser

            results = browser.check_pages(html)
            print(browser.format_results(results))
            problems += [r for r in results if not r.ok]
        return 1 if problems else 0
    except KdlabError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
