"""Examples run and write their figures; plots and tidy output behave."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import numpy as np
import polars as pl
import pytest

import interlace
from interlace import datasets

EXAMPLES = sorted((pathlib.Path(__file__).parent.parent / "examples").glob("*.py"))


@pytest.mark.parametrize(
    "script",
    [pytest.param(p, id=p.stem, marks=[pytest.mark.slow] if "pymc" in p.read_text() else [])
     for p in EXAMPLES],
)
def test_example_runs_and_writes_pngs(script, tmp_path):
    env = dict(os.environ, MPLBACKEND="Agg")
    out = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=600, env=env
    )
    assert out.returncode == 0, out.stderr[-2000:]
    pngs = list(tmp_path.glob("*.png"))
    assert pngs, "example wrote no figure"
    for p in pngs:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000


@pytest.fixture(scope="module")
def fit():
    return interlace.fit("Reaction ~ Days", datasets.load("sleepstudy"), random=["(Days | Subject)"])


def test_plots_return_figures(fit):
    import matplotlib

    matplotlib.use("Agg")
    from interlace import plots

    fig = plots.caterpillar(fit, "Subject")
    assert len(fig.axes) == 2
    assert plots.residuals_vs_fitted(fit).axes[0].get_xlabel() == "fitted"
    assert plots.qq(fit).axes[0].get_title() == "Normal QQ"
    with pytest.raises(KeyError, match="Nobody"):
        plots.caterpillar(fit, "Nobody")


def test_conditional_variances_shrink_with_information(fit):
    cv = fit.engine.conditional_variances()["Subject"]
    assert cv.shape == (18, 2, 2)
    vc = fit.variance_components["Subject"].to_numpy()
    # the conditional variance of b given y is below the prior variance
    assert np.all(cv[:, 0, 0] < vc[0, 0]) and np.all(cv[:, 1, 1] < vc[1, 1])
    assert np.all(np.linalg.eigvalsh(cv) > 0)


def test_to_frame_pandas_and_polars(fit):
    df = datasets.load("sleepstudy")
    table = fit.to_frame()
    assert list(table.columns) == ["term", "estimate", "std_error", "df", "statistic", "p_value"]
    np.testing.assert_allclose(table["statistic"], fit.fe_params / fit.fe_bse)
    pl_df = pl.from_pandas(df.assign(Subject=df["Subject"].astype(str)))
    rp = interlace.fit("Reaction ~ Days", pl_df, random=["(Days | Subject)"])
    t2 = rp.to_frame()
    assert isinstance(t2, pl.DataFrame)
    np.testing.assert_allclose(t2["estimate"].to_numpy(), table["estimate"].to_numpy(), rtol=1e-8)


def test_penicillin_summary_lists_both_groups_and_says_reml():
    r = interlace.fit("diameter ~ 1", datasets.load("penicillin"), groups=["plate", "sample"])
    text = str(r.summary())
    assert "REML" in text
    assert "plate" in text and "sample" in text and "Residual" in text
    assert "Number of obs: 144" in text
    assert repr(r).startswith("<CrossedLMEResult") and len(repr(r)) < 200


def test_verbose_reports_progress(capsys):
    interlace.fit("Reaction ~ Days", datasets.load("sleepstudy"), groups="Subject", verbose=True)
    err = capsys.readouterr().err
    assert "evaluation" in err and "done after" in err
