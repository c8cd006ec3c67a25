"""Optional dependencies missing (issue 17, item 13): an ImportError with the pip command.

A missing package is simulated by ``sys.modules[name] = None``, which makes ``import name``
raise ImportError as if it were not installed.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

import interlace
from interlace import datasets
from interlace.cli import main

PYMC_MSG = 'backend="pymc" needs pymc, which is not installed: pip install "interlace[pymc]"'


@pytest.fixture
def sleep():
    return datasets.load("sleepstudy")


@pytest.fixture
def no_pymc(monkeypatch):
    monkeypatch.setitem(sys.modules, "pymc", None)


def test_fit_without_pymc_names_the_extra(sleep, no_pymc):
    with pytest.raises(ImportError) as info:
        interlace.fit("Reaction ~ Days", sleep, groups="Subject", backend="pymc")
    assert str(info.value) == PYMC_MSG
    assert not isinstance(info.value, ModuleNotFoundError)


def test_glmer_without_pymc_names_the_extra(no_pymc):
    cbpp = datasets.load("cbpp")
    with pytest.raises(ImportError) as info:
        interlace.glmer("prop ~ period", cbpp, "binomial", groups="herd", weights="size", backend="pymc")
    assert str(info.value) == PYMC_MSG


def test_without_pymc_and_arviz_both_are_named(sleep, no_pymc, monkeypatch):
    monkeypatch.setitem(sys.modules, "arviz", None)
    msg = r'needs pymc and arviz, which are not installed: pip install "interlace\[pymc\]"'
    with pytest.raises(ImportError, match=msg):
        interlace.fit("Reaction ~ Days", sleep, groups="Subject", backend="pymc")


def test_nutpie_sampler_without_nutpie(sleep, monkeypatch):
    pytest.importorskip("pymc")
    monkeypatch.setitem(sys.modules, "nutpie", None)
    with pytest.raises(ImportError) as info:
        interlace.fit("Reaction ~ Days", sleep, groups="Subject", backend="pymc", sampler="nutpie")
    want = (
        "sampler='nutpie' needs nutpie, which is not installed: pip install \"interlace[nutpie]\"; "
        "nutpie is the default sampler (it comes with interlace[pymc]) — or pass sampler='pymc' for "
        "PyMC's own NUTS"
    )
    assert str(info.value) == want
    with pytest.raises(ImportError) as default:  # the default sampler does not change silently
        interlace.fit("Reaction ~ Days", sleep, groups="Subject", backend="pymc")
    assert str(default.value) == want


def test_auto_sampler_falls_back_to_pymc_without_nutpie(monkeypatch):
    from interlace.backends.pymc.sampling import choose_sampler

    monkeypatch.setitem(sys.modules, "nutpie", None)
    assert choose_sampler("auto") == "pymc"


def test_plots_without_matplotlib(sleep, monkeypatch):
    from interlace import plots

    r = interlace.fit("Reaction ~ Days", sleep, groups="Subject")
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    msg = r'^plotting needs matplotlib, which is not installed: pip install "interlace\[plot\]"$'
    with pytest.raises(ImportError, match=msg):
        plots.qq(r)
    with pytest.raises(ImportError, match=msg):
        interlace.plot_compare(r, r)


def test_cli_prints_one_line_and_exits_2(tmp_path, no_pymc, capsys):
    data = tmp_path / "sleep.csv"
    datasets.load("sleepstudy").to_csv(data, index=False)
    args = ["fit", str(data), "--formula", "Reaction ~ Days", "--groups", "Subject", "--backend", "pymc"]
    code = main(args)
    err = capsys.readouterr()
    assert code == 2
    assert err.out == ""
    assert err.err == f"interlace: error: {PYMC_MSG}\n"


def test_cli_glmer_without_pymc(tmp_path, no_pymc, capsys):
    data = tmp_path / "cbpp.csv"
    cb = datasets.load("cbpp")
    cb.assign(prop=cb["incidence"] / cb["size"]).to_csv(data, index=False)
    code = main(["fit", str(data), "--model", "glmer", "--family", "binomial", "--formula", "prop ~ period",
                 "--groups", "herd", "--weights", "size", "--backend", "pymc"])
    assert code == 2
    assert capsys.readouterr().err.splitlines() == [f"interlace: error: {PYMC_MSG}"]


def test_reml_fits_need_no_optional_package(sleep, no_pymc, monkeypatch):
    monkeypatch.setitem(sys.modules, "arviz", None)
    monkeypatch.setitem(sys.modules, "nutpie", None)
    r = interlace.fit("Reaction ~ Days", sleep, groups="Subject")
    assert np.isfinite(r.llf)
