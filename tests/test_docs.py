"""Every Python code block in docs/*.md runs (blocks of one page share a namespace)."""

from __future__ import annotations

import os
import pathlib
import re

import pytest

DOCS = pathlib.Path(__file__).parent.parent / "docs"
PAGES = sorted(DOCS.glob("*.md"))
BLOCK = re.compile(r"```python\n(.*?)```", re.S)


def _param(page: pathlib.Path):
    """Pages whose code samples with PyMC run outside the fast lane."""
    slow = 'backend="pymc"' in "".join(BLOCK.findall(page.read_text()))
    return pytest.param(page, id=page.stem, marks=[pytest.mark.slow] if slow else [])


@pytest.mark.parametrize("page", [_param(p) for p in PAGES])
def test_page_code_runs(page, tmp_path, monkeypatch):
    os.environ.setdefault("MPLBACKEND", "Agg")
    monkeypatch.chdir(tmp_path)
    blocks = BLOCK.findall(page.read_text())
    namespace: dict = {"__name__": f"docs_{page.stem}"}
    for i, code in enumerate(blocks):
        try:
            exec(compile(code, f"{page.name}[block {i}]", "exec"), namespace)
        except Exception as ex:  # pragma: no cover - the message is the point
            raise AssertionError(f"{page.name} block {i} failed: {ex!r}\n{code}") from ex


def test_every_api_page_exists():
    names = {p.stem for p in PAGES}
    expected = {
        "fit",
        "result",
        "predict",
        "correlation",
        "kenward_roger",
        "model-comparison",
        "random-slopes",
        "glmer",
        "clmm",
        "coxme",
        "pymc",
        "bayesian-vs-frequentist",
        "performance",
        "after-fit",
        "anova",
    }
    assert expected <= names
