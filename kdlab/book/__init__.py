"""The course as a book: every notebook executed, rendered with Sphinx + myst-nb into a static site.

    make book                  # the class profile into _build/html/ (index.html is the entry)
    make book PROFILE=smoke    # what CI builds and checks
    python -m kdlab.book build --profile smoke
    python -m kdlab.book check _build/html

One concern per module:

    launch.py        the repository URL (one setting, pyproject's [project.urls]) and the launch links
    bootstrap.py     the notebooks' first cell for Colab/Binder: installs the kit when it is missing
    execution.py     the execution cache: executed copies keyed by the code cells and the profile
    kernel_hook.py   runs inside the kernel during a book execution: alt text for every figure
    kernel_startup.py  the kernel's PYTHONSTARTUP that installs kernel_hook
    alt_text.py      a figure described in words (for its alt text)
    solutions.py     solutions behind a "show solution" toggle; hidden tests removed
    panels.py        an interactive panel's static state, with a line on how to move it
    page.py          one executed notebook turned into one book page (the transforms above, in order)
    pages.py         the README and docs/ pages staged for the book (setup, profiles, bad inputs, ...)
    reproduced.py    the "Reproduced vs paper" page, from the recorded results and kdlab.recipes
    sphinx_ext.py    the Sphinx side: alt text applied to images, MathJax served from the build
    build.py         staging + sphinx-build, incremental
    checks.py        static checks of the built site (pages, links, alt text, offline, no hidden tests)
    browser.py       every page in headless Chromium: console errors and axe-core's WCAG A/AA report
"""
