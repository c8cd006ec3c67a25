"""θ = 0 is a stationary point of the deviance; the optimizer must not stop there when the
deviance falls away from it (found on cbpp's prop ~ period + (1 | herd), which lme4 fits
with θ = 0.0669)."""

from __future__ import annotations

import pytest

import interlace
from interlace import datasets


@pytest.mark.parametrize("optimizer", ["lbfgsb", "bobyqa"])
def test_does_not_stall_on_the_boundary(optimizer):
    r = interlace.fit("prop ~ period", datasets.load("cbpp"), groups="herd", optimizer=optimizer)
    # lme4 1.1-31: logLik 29.0289359327, theta 0.06687454702
    assert r.llf == pytest.approx(29.0289359327, rel=1e-8)
    assert r.theta[0] == pytest.approx(0.06687454702, rel=1e-3)
    assert not r.is_singular


def test_a_genuinely_singular_fit_stays_on_the_boundary():
    df = datasets.load("sleepstudy")
    # random noise grouping: no between-group variance to find
    df = df.assign(noise=(df.index % 7).astype(str))
    r = interlace.fit("Reaction ~ Days", df, groups=["Subject", "noise"])
    assert r.theta[1] < 1e-4 and r.is_singular
