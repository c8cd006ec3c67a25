"""The same random-effects term given twice is refused (lme4 would fit two copies silently)."""

from __future__ import annotations

import pytest

import interlace
from interlace import datasets


@pytest.mark.parametrize("formula, kw", [
    ("Reaction ~ Days + (1 | Subject)", {"groups": "Subject"}),
    ("Reaction ~ Days", {"random": ["(1 | Subject)", "(1|Subject)"]}),
    ("Reaction ~ Days + (Days | Subject) + (1 + Days | Subject)", {}),
    ("Reaction ~ Days + (1 | Subject) + (Days || Subject)", {}),
])
def test_fit_refuses_a_repeated_term(formula, kw):
    ss = datasets.load("sleepstudy")
    with pytest.raises(ValueError, match=r"on 'Subject' .* is given twice.*lme4 would fit the copies"):
        interlace.fit(formula, ss, **kw)


def test_the_groups_hint_names_the_column():
    with pytest.raises(ValueError, match=r"groups='Subject' already adds '\(1 \| Subject\)'"):
        interlace.fit("Reaction ~ Days + (1 | Subject)", datasets.load("sleepstudy"), groups="Subject")


def test_distinct_terms_on_one_factor_are_fitted():
    r = interlace.fit("Reaction ~ Days + (1 | Subject) + (0 + Days | Subject)", datasets.load("sleepstudy"))
    assert r.term_names() == ["Subject", "Subject.1"]


def test_every_model_shares_the_check():
    cbpp = datasets.load("cbpp")
    with pytest.raises(ValueError, match="given twice"):
        interlace.glmer("cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp, "binomial",
                        groups="herd")
    wine = datasets.load("wine")
    with pytest.raises(ValueError, match="given twice"):
        interlace.clmm("rating ~ temp + (1 | judge)", wine, groups="judge")
    rats = datasets.load("rats")
    with pytest.raises(ValueError, match="given twice"):
        interlace.coxme("Surv(time, status) ~ rx + (1 | litter)", rats, groups="litter")
