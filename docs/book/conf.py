"""Sphinx configuration of the course book (`make book`; `python -m kdlab.book build`).

The sources are staged by `kdlab.book.build` into `_build/src/` (executed notebooks, README, docs/ pages);
this folder holds the configuration and the book's own pages. Nothing is executed here
(`nb_execution_mode = "off"`): the notebooks arrive executed from the book's cache.
"""
project = "kdlab"
author = "the kdlab authors"
html_title = "kdlab: meta-learning for knowledge distillation"
extensions = ["myst_nb", "kdlab.book.sphinx_ext"]
nb_execution_mode = "off"
nb_merge_streams = True
myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 3
suppress_warnings = ["myst.header", "mystnb.unknown_mime_type", "misc.highlighting_failure"]
exclude_patterns = []
html_theme = "sphinx_book_theme"
html_static_path = ["_static"]
html_css_files = ["kdlab-book.css"]
html_last_updated_fmt = None
html_copy_source = False
html_show_sourcelink = False
html_theme_options = {
    "home_page_in_toc": True,
    "show_navbar_depth": 1,
    "use_download_button": False,
    "use_fullscreen_button": False,
    "use_repository_button": False,
    "use_source_button": False,
    "navigation_with_keys": False,
}
html_sidebars = {"**": ["navbar-logo.html", "search-field.html", "sbt-sidebar-nav.html"]}
# light pages: the figures are drawn on white (and an empty mode makes the theme log a console error)
html_context = {"default_mode": "light"}
