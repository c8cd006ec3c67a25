"""Order-free cross-products (interlace.data.canonical): an eager and a lazy PyMC fit of the same
data read the same sums bit for bit, so one seed gives the same draws on both paths and twice on
the lazy one, with nutpie and with PyMC's sampler."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import interlace
from interlace import datasets

pytest.importorskip("pymc")
pl = pytest.importorskip("polars")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))


def _design(formula, df, random):
    from interlace.data.build import lmm_model

    return lmm_model(formula, df, None, random, "REML", "lbfgsb", None, None, None, "satterthwaite", None,
                     False)[1]


def _lazy_design(formula, df, random, canonical=True):
    from interlace.backends.reml.lazy_fit import crossproduct_design
    from interlace.data.lazy import lazy_crossproducts
    from interlace.model.formula import model_terms

    _, terms = model_terms(formula, None, random)
    cp = lazy_crossproducts(pl.from_pandas(df).lazy(), formula, terms, canonical=canonical)
    return crossproduct_design(cp.ZtZ, cp.ZtXy, cp.XytXy, cp.terms, cp.X_names, cp.response, cp.n)


def _crossed(n_subj=12, n_item=10):
    from designs import subject_item_slopes

    return subject_item_slopes(seed=2, n_subj=n_subj, n_item=n_item)


def _cases():
    d = _crossed()
    return [("Reaction ~ Days", datasets.load("sleepstudy"), ["(Days | Subject)"]),
            (d.formula, d.data, d.random)]


def _same_gram(a, b):
    assert np.array_equal(a[0].indptr, b[0].indptr) and np.array_equal(a[0].indices, b[0].indices)
    assert np.array_equal(a[0].data, b[0].data)
    assert np.array_equal(a[1], b[1]) and np.array_equal(a[2], b[2])


@pytest.mark.parametrize("case", [0, 1], ids=["sleepstudy", "crossed"])
def test_eager_rows_and_lazy_frame_give_identical_cross_products(case):
    from interlace.backends.pymc.columns import canonical_design

    formula, df, random = _cases()[case]
    eager = canonical_design(_design(formula, df, random))
    shuffled = canonical_design(_design(formula, df.sample(frac=1.0, random_state=4), random))
    lazy = _lazy_design(formula, df, random)
    _same_gram(eager.gram, lazy.gram)
    _same_gram(eager.gram, shuffled.gram)  # the row order does not matter
    # and the grid changes the sums by far less than the likelihood resolves
    plain = _lazy_design(formula, df, random, canonical=False)
    scale = np.abs(lazy.gram[2]).max()
    np.testing.assert_allclose(lazy.gram[2], plain.gram[2], rtol=1e-13, atol=1e-13 * scale)
    np.testing.assert_allclose(lazy.gram[1], plain.gram[1], rtol=1e-12, atol=1e-13 * scale)


@pytest.mark.parametrize("case", [0, 1], ids=["sleepstudy", "crossed"])
def test_eager_and_lazy_marginal_likelihood_are_the_same_function(case):
    from interlace.backends.pymc.dense import DenseMarginalLMM
    from interlace.backends.pymc.marginal import GaussianPrior, MarginalLMM
    from interlace.backends.pymc.model import marginal_density
    from interlace.backends.pymc.priors import resolve_priors
    from interlace.backends.pymc.single import SingleTermLMM

    formula, df, random = _cases()[case]
    eager, lazy = _design(formula, df, random), _lazy_design(formula, df, random)
    me, ml = marginal_density(eager), marginal_density(lazy)
    # a lazy crossed design is not mistaken for one grouping factor (its terms have no row codes)
    assert type(me) is type(ml) is (SingleTermLMM if case == 0 else DenseMarginalLMM)
    pe, pz = resolve_priors(eager, None), resolve_priors(lazy, None)
    assert {k: v.params for k, v in pe.sd.items()} == {k: v.params for k, v in pz.sd.items()}
    assert {k: v.params for k, v in pe.fixed.items()} == {k: v.params for k, v in pz.fixed.items()}
    prior = GaussianPrior.from_cov(np.zeros(eager.p), np.eye(eager.p) * 100.0)
    rows = MarginalLMM(eager)  # the blocked evaluator on the rows: the same function to rounding
    rng = np.random.default_rng(1)
    for _ in range(3):
        th = np.abs(rng.normal(size=eager.n_theta)) * 0.5
        a, b = me.logp_integrated(th, 3.0, prior), ml.logp_integrated(th, 3.0, prior)
        assert a.logp == b.logp and np.array_equal(a.g_theta, b.g_theta) and a.g_sigma == b.g_sigma
        c = rows.logp_integrated(th, 3.0, prior)
        assert a.logp == pytest.approx(c.logp, rel=1e-11)
        np.testing.assert_allclose(a.g_theta, c.g_theta, rtol=1e-7, atol=1e-8 * np.abs(c.g_theta).max())


@pytest.mark.slow
@pytest.mark.parametrize("sampler", ["nutpie", "pymc"])
@pytest.mark.parametrize("case", [0, 1], ids=["sleepstudy", "crossed"])
def test_lazy_and_eager_pymc_fits_give_identical_draws(sampler, case):
    if sampler == "nutpie":
        pytest.importorskip("nutpie")
    formula, df, random = _cases()[case]
    kw = dict(random=random, backend="pymc", draws=60, tune=60, chains=2, cores=2, random_seed=11,
              progressbar=False, sampler=sampler)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        eager = interlace.fit(formula, df, **kw)
        one = interlace.fit(formula, pl.from_pandas(df).lazy(), **kw)
        two = interlace.fit(formula, pl.from_pandas(df).lazy(), **kw)
    for v in ("theta", "sigma", "beta"):
        e, a, b = (r.idata.posterior[v].to_numpy() for r in (eager, one, two))
        np.testing.assert_array_equal(a, e)  # lazy == eager
        np.testing.assert_array_equal(a, b)  # two lazy fits
