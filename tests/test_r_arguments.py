"""R's argument names and mistyped keywords get a TypeError saying what interlace takes instead."""

from __future__ import annotations

import pytest

import interlace
from interlace import datasets


@pytest.fixture(scope="module")
def fits():
    ss = datasets.load("sleepstudy")
    a = interlace.fit("Reaction ~ Days + (1 | Subject)", ss)
    b = interlace.fit("Reaction ~ Days + (Days | Subject)", ss)
    return ss, a, b


def test_r_arguments_of_the_fitting_functions(fits):
    ss = fits[0]
    with pytest.raises(TypeError, match=r'fit\(\): REML= is R\'s argument: write method="REML" or'):
        interlace.fit("Reaction ~ Days + (1 | Subject)", ss, REML=False)
    with pytest.raises(TypeError, match=r"control= is R's argument: the optimiser is chosen with optimizer="):
        interlace.fit("Reaction ~ Days + (1 | Subject)", ss, control={})
    with pytest.raises(TypeError, match=r"unknown keyword metod= \(did you mean method=\?\)"):
        interlace.fit("Reaction ~ Days + (1 | Subject)", ss, metod="ML")
    with pytest.raises(TypeError, match=r"glmer\(\): REML= is R's argument: glmer fits by maximum"):
        interlace.glmer("Reaction ~ Days + (1 | Subject)", ss, "poisson", REML=False)
    with pytest.raises(TypeError, match=r"clmm\(\): unknown keyword weight="):
        interlace.clmm("Reaction ~ Days + (1 | Subject)", ss, weight="Days")


def test_r_arguments_of_the_verbs(fits):
    ss, a, b = fits
    assert a.call["data_name"] == "ss"  # the check in front of fit() keeps R's Data: line
    with pytest.raises(TypeError, match=r"confint\(\): parm= is R's argument.*confint\(\)\.loc"):
        a.confint(parm="Days")
    with pytest.raises(TypeError, match=r"predict\(\): allow_new_levels= is R's argument: interlace always "
                                        r"predicts new levels with zero random effects"):
        a.predict(ss, allow_new_levels=False)
    with pytest.raises(ValueError, match=r"lmerTest's ddf='lme4' \(tests without df\) is not offered"):
        a.summary(ddf="lme4")
    with pytest.raises(ValueError, match=r"ddf='lme4'"):
        interlace.anova(a, ddf="lme4")


def test_anova_names_unknown_keywords(fits):
    _, a, b = fits
    with pytest.raises(TypeError, match=r"anova\(\): unknown keyword tpye= \(did you mean type=\?\)"):
        interlace.anova(a, tpye=2)
    with pytest.raises(TypeError, match=r"refit= is R's argument: interlace's likelihood-ratio test "
                                        r'refits REML fits by ML.*fit the models with method="ML"'):
        interlace.anova(a, b, refit=False)


def test_anova_on_clmm_says_which_fits_it_compares():
    wine = datasets.load("wine")
    c = interlace.clmm("rating ~ temp + (1 | judge)", wine)
    with pytest.raises(TypeError, match=r"interlace.fit \(REML/ML\) or interlace.glmer, got OrdinalResult; "
                                        r"for clmm fits"):
        interlace.anova(c, c)
    with pytest.raises(TypeError, match=r"got OrdinalResult$"):  # no "(backend='?')"
        interlace.anova(c)


@pytest.mark.parametrize(
    "family, link, message",
    [
        ("poisson", "logit", "link 'logit' is not a poisson link; poisson takes log or identity"),
        ("Gamma", "probit", "Gamma takes inverse, log or identity"),
        ("negative_binomial", "inverse", "negative_binomial takes log or identity"),
    ],
)
def test_a_link_the_family_does_not_take_is_refused_before_fitting(family, link, message):
    from interlace.model.families import get_family

    cbpp = datasets.load("cbpp")
    with pytest.raises(ValueError, match=message):
        interlace.glmer("incidence ~ period + (1 | herd)", cbpp, family, link=link)
    with pytest.raises(ValueError, match=message):  # a Family object given a new link
        get_family(get_family(family), link)
