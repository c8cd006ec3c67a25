"""The Sphinx site documents every public name, and every page is reachable from a toctree.

The site itself is built by ``sphinx-build -W`` in CI (.ci/run); these checks catch the two
commonest breakages (a new public name with no API entry, a new page in no toctree) in the
fast test lane, without Sphinx.
"""

from __future__ import annotations

import importlib
import inspect
import pathlib
import re

import pytest

import interlace

DOCS = pathlib.Path(__file__).parent.parent / "docs"
AUTODOC = re.compile(r"^\.\. auto(?:function|class|method|module):: ([\w.]+)", re.M)
TOCTREE = re.compile(r"```\{toctree\}\n(.*?)```", re.S)

# Public beyond __all__: the plots, the diagnostics and the datasets.
EXTRA = [
    "interlace.plots.caterpillar",
    "interlace.plots.residuals_vs_fitted",
    "interlace.plots.qq",
    "interlace.diagnostics.r2",
    "interlace.diagnostics.icc",
    "interlace.diagnostics.influence",
    "interlace.datasets.load",
    "interlace.datasets.names",
    "interlace.results.glmm.GLMMResult",
    "interlace.results.ordinal.OrdinalResult",
    "interlace.results.survival.SurvivalResult",
    "interlace.results.posterior.PyMCResult",
    "interlace.results.posterior.PyMCGLMMResult",
]


def _documented() -> set[str]:
    names: set[str] = set()
    for page in (DOCS / "api").glob("*.md"):
        names.update(AUTODOC.findall(page.read_text()))
    return names


def _resolve(dotted: str):
    module, _, attr = dotted.rpartition(".")
    return getattr(importlib.import_module(module), attr)


PUBLIC = [f"interlace.{n}" for n in interlace.__all__ if n != "__version__"] + EXTRA


@pytest.mark.parametrize("name", PUBLIC)
def test_public_name_in_api_reference_with_docstring(name):
    assert name in _documented(), f"{name} has no autofunction/autoclass entry in docs/api/*.md"
    doc = inspect.getdoc(_resolve(name))
    assert doc and len(doc) > 20, f"{name} has no real docstring"


def test_every_page_in_a_toctree():
    listed: set[str] = {"index"}
    for page in DOCS.rglob("*.md"):
        if "_build" in page.parts:
            continue
        base = page.parent.relative_to(DOCS)
        for block in TOCTREE.findall(page.read_text()):
            for line in block.splitlines():
                entry = line.strip()
                if entry and not entry.startswith(":"):
                    path = entry.lstrip("/") if entry.startswith("/") else str(base / entry)
                    listed.add(str(pathlib.PurePosixPath(path)))
    pages = {
        str(p.relative_to(DOCS).with_suffix(""))
        for p in DOCS.rglob("*.md")
        if "_build" not in p.parts
    }
    missing = sorted(pages - listed)
    assert not missing, f"pages in no toctree (add them to docs/guides.md, docs/user-guide.md): {missing}"
