"""Sphinx configuration: MyST pages, myst-nb executed examples, autodoc API reference.

Build: ``sphinx-build -W -b html docs docs/_build/html`` (``pip install -e ".[docs]"``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# The example notebooks run in a kernel subprocess: it must import this checkout too.
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
# The kernel must pick matplotlib's inline backend (ipykernel sets it when MPLBACKEND is unset);
# an inherited MPLBACKEND=Agg (as in the test suite) would drop every figure from the pages.
os.environ.pop("MPLBACKEND", None)

import interlace  # noqa: E402

project = "interlace"
author = "interlace developers"
copyright = "2026, interlace developers"
release = version = interlace.__version__

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
]

exclude_patterns = ["_build", "**.ipynb_checkpoints", "jupyter_execute"]
source_suffix = {".md": "myst-nb", ".rst": "restructuredtext"}

# MyST: the seed page format ({eval-rst} blocks, {doc} links) plus heading anchors for links
# such as [x](anova.md#ddf).
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

# myst-nb: text notebooks under examples/ run at build time; results are cached in
# _build/.jupyter_cache, so a rebuild re-runs only the notebooks whose code changed.
nb_execution_mode = "cache"
nb_execution_timeout = 900
nb_execution_raise_on_error = True
nb_execution_show_tb = True
nb_merge_streams = True

# autodoc: signatures and type hints from the code, docstrings as written (plain reST; no
# napoleon: it would read a property docstring "−2 logLik: ..." as a type declaration).
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_default_options = {"members": False, "show-inheritance": False}
# A long signature gets one parameter per line instead of one unreadable paragraph.
python_maximum_signature_line_length = 88

html_theme = "pydata_sphinx_theme"
html_title = f"interlace {release}"
html_theme_options = {
    "navbar_align": "left",
    "show_toc_level": 2,
    "navigation_with_keys": False,
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version"],
    "secondary_sidebar_items": ["page-toc"],
}
html_context = {"default_mode": "light"}
html_show_sourcelink = False
html_static_path = ["_static"]
html_css_files = ["custom.css"]

# Pages written by several people: a skipped heading level is a style matter, not an error.
suppress_warnings = ["myst.header"]
# The page's table of contents lists members by their own name (fe_conf_int(), not
# CrossedLMEResult.fe_conf_int()).
toc_object_entries_show_parents = "hide"
