"""Where lme4's optimizers stop short, interlace must find the better optimum.

tests/data/three_level_hard.csv was simulated by an early version of tests/r/make_extra_cases.R
(3-level condition, correlated subject slopes). lme4 1.1-31 with its default optimizers
(bobyqa, nloptwrap) stops on a boundary with logLik -3617.364739595; started from interlace's θ
it confirms the better optimum, logLik -3612.249503028.
"""

from __future__ import annotations

import pathlib

import pandas as pd
import pytest

import interlace

DATA = pathlib.Path(__file__).parent / "data" / "three_level_hard.csv"


@pytest.mark.parametrize("optimizer", ["lbfgsb", "bobyqa"])
def test_finds_the_higher_optimum(optimizer):
    df = pd.read_csv(DATA)
    df["condition"] = pd.Categorical(df["condition"], categories=["a", "b", "c"])
    r = interlace.fit(
        "rt ~ condition", df, random=["(1 + condition | subject)", "(1 | item)"], optimizer=optimizer
    )
    assert r.llf == pytest.approx(-3612.249503028, rel=1e-9)
    assert r.llf > -3617.364739595
    assert r.fe_params["condition[T.b]"] == pytest.approx(35.46311846, rel=1e-5)
