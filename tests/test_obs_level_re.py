"""Observation-level random effects (issue 17, item 10): lme4's level checks per model kind.

lmer refuses a grouping factor with as many levels as observations (``check.nobs.vs.nlev``)
and a term with as many random effects as observations (``check.nobs.vs.nRE``); glmer allows
equality in both (lme4 1.1-31's glFormula passes ``allow.n = TRUE``), which is how
over-dispersed counts are modelled. References: tests/r/make_obs_level_re.R (lme4 1.1-31,
glmerControl(optimizer="bobyqa", optCtrl=list(rhoend=1e-10), tolPwrss=1e-12)).
"""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pandas as pd
import pytest

import interlace
from interlace import datasets

HERE = pathlib.Path(__file__).parent / "data" / "checks"
REF = json.loads((HERE / "obs_level_re.json").read_text())


def _ticks() -> pd.DataFrame:
    return pd.read_csv(HERE / "obs_level_poisson.csv", dtype={"year": str})


def _cbpp() -> pd.DataFrame:
    cb = datasets.load("cbpp")
    return cb.assign(obs=[f"o{i}" for i in range(len(cb))])


def _check(r, ref: dict) -> None:
    np.testing.assert_allclose(r.fe_params.to_numpy(), list(ref["fixef"].values()), rtol=1e-4)
    np.testing.assert_allclose(r.fe_bse.to_numpy(), list(ref["se"].values()), rtol=2e-3)
    assert r.llf == pytest.approx(ref["loglik"], rel=1e-6)
    np.testing.assert_allclose(r.theta, list(ref["theta"].values()), rtol=1e-3)
    assert r.converged


def test_overdispersed_poisson_with_an_observation_level_effect_matches_lme4():
    d = _ticks()
    r = interlace.glmer(
        "ticks ~ year + cheight", d, "poisson", random=["(1 | brood)", "(1 | location)", "(1 | obs)"]
    )
    assert r.nobs == REF["poisson_obs"]["nobs"] == d["obs"].nunique()
    _check(r, REF["poisson_obs"])
    # the observation-level variance is what the over-dispersion needed: logLik rises by ~44
    assert r.llf - REF["poisson_no_obs"]["loglik"] > 40


def test_cbpp_with_an_observation_level_effect_matches_lme4():
    cb = _cbpp()
    r = interlace.glmer(
        "prop ~ period", cb, "binomial", random=["(1 | herd)", "(1 | obs)"],
        weights=cb["size"].to_numpy(float),
    )
    _check(r, REF["cbpp_obs"])


def test_lmm_still_refuses_one_level_per_observation():
    d = _ticks().assign(y=lambda x: np.log1p(x["ticks"]))
    assert "number of levels" in REF["lmer_refusal"]  # lme4's lmer refuses it too
    with pytest.raises(ValueError, match=r"'obs'.*332 levels for 332 observations.*glmer accepts"):
        interlace.fit("y ~ year", d, random=["(1 | obs)"])


def test_glmer_refuses_more_random_effects_than_observations():
    d = _ticks()
    with pytest.raises(ValueError, match=r"'\(1 \+ cheight \| obs\)' has 664 random effects for 332"):
        interlace.glmer("ticks ~ year", d, "poisson", random=["(1 + cheight | obs)"])


def test_glmer_still_refuses_a_single_level():
    d = _ticks().assign(one="a")
    with pytest.raises(ValueError, match=r"'one'.*only 1 level"):
        interlace.glmer("ticks ~ year", d, "poisson", random=["(1 | one)"])
