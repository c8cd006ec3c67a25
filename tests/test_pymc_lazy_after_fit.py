"""After-fit tools on a PyMC fit from a lazy frame: r2/icc from the cross-products, clear refusals."""

import warnings

import numpy as np
import polars as pl
import pytest

import interlace
from interlace import datasets

FAST = dict(backend="pymc", chains=2, draws=80, tune=80, random_seed=3, progressbar=False)


@pytest.fixture(scope="module")
def fits():
    df = datasets.load("sleepstudy")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        eager = interlace.fit("Reaction ~ Days", df, random=["(Days | Subject)"], **FAST)
        frame = pl.from_pandas(df).lazy()
        lazy = interlace.fit("Reaction ~ Days", frame, random=["(Days | Subject)"], **FAST)
    assert np.array_equal(eager.idata.posterior["beta"].values, lazy.idata.posterior["beta"].values)
    return eager, lazy


def test_lazy_r2_and_icc_equal_the_eager_ones(fits):
    eager, lazy = fits
    for name in ("r2", "icc"):
        want, got = getattr(eager, name)(), getattr(lazy, name)()
        assert set(got) == set(want)
        for key, value in want.items():
            assert np.isfinite(got[key])
            assert got[key] == pytest.approx(value, rel=1e-8, abs=1e-12), (name, key)


def test_lazy_posterior_refuses_what_needs_rows_by_name(fits):
    _, lazy = fits
    with pytest.raises(ValueError, match="fitted from a lazy frame"):
        lazy.simulate(2, seed=1)
    with pytest.raises(ValueError, match="fitted from a lazy frame"):
        lazy.loo()
    with pytest.raises(ValueError, match="fitted from a lazy frame"):
        interlace.anova(lazy, lazy, names=["a", "b"])
