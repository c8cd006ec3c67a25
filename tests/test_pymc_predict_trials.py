"""Posterior predictive of a binomial GLMM with cbind(successes, failures): proportions of each
row's trials, as simulate() and the fitted likelihood, not 0/1 draws."""

import warnings

import numpy as np
import pytest

import interlace
from interlace import datasets


@pytest.fixture(scope="module")
def cbpp_fit():
    cbpp = datasets.load("cbpp")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        fit = interlace.glmer("cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp, "binomial",
                              backend="pymc", chains=2, draws=150, tune=150, random_seed=2, progressbar=False)
    return cbpp, fit


def _on_grid(draws, trials):
    counts = draws * trials[None, :]
    return np.allclose(counts, np.round(counts)) and np.all(counts <= trials[None, :] + 1e-9)


def test_response_draws_are_proportions_of_the_rows_trials(cbpp_fit):
    cbpp, fit = cbpp_fit
    new = cbpp.head(4)
    trials = new["size"].to_numpy(dtype=float)
    draws = fit.predict(new, kind="response", output="draws", seed=1)
    assert _on_grid(draws, trials)
    mean = fit.predict(new, kind="mean", output="draws")
    # Var(y) = E[μ(1 − μ)/n] + Var(μ): far below the Bernoulli variance E[μ(1 − μ)] of one trial
    want = np.mean(mean * (1 - mean) / trials, axis=0) + np.var(mean, axis=0)
    assert np.var(draws, axis=0) == pytest.approx(want, rel=0.35)
    assert np.all(np.var(draws, axis=0) < 0.5 * np.mean(mean * (1 - mean), axis=0))
    fitted = fit.predict(kind="response", output="draws", seed=1)  # the fitted rows: their weights
    assert _on_grid(fitted, cbpp["size"].to_numpy(dtype=float))


def test_response_without_the_trials_columns_is_refused(cbpp_fit):
    cbpp, fit = cbpp_fit
    new = cbpp.head(2).drop(columns=["size"])
    with pytest.raises(ValueError, match=r"newdata needs the columns"):
        fit.predict(new, kind="response")
    assert np.all(np.isfinite(fit.predict(new, kind="mean")))  # the mean needs no trials
