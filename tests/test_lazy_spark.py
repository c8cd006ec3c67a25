"""PySpark DataFrames through narwhals' lazy support: only the aggregates leave Spark.

Runs a local Spark session (``local[1]``; needs PySpark and a Java runtime, skipped otherwise).
Marked slow: starting the JVM takes tens of seconds.
"""

from __future__ import annotations

import shutil
import warnings

import numpy as np
import pandas as pd
import pytest

import interlace
from interlace import datasets

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def spark():
    pytest.importorskip("pyspark")
    if shutil.which("java") is None:
        pytest.skip("PySpark needs a Java runtime")
    from pyspark.sql import SparkSession

    session = (SparkSession.builder.master("local[1]").appName("interlace-tests")
               .config("spark.ui.enabled", "false").config("spark.sql.shuffle.partitions", "2").getOrCreate())
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


def _spark_frame(spark, df: pd.DataFrame):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return spark.createDataFrame(df)


def test_spark_lazy_fit_equals_the_eager_fit(spark):
    df = datasets.load("sleepstudy")
    df["Subject"] = df["Subject"].astype(str)
    eager = interlace.fit("Reaction ~ Days", df, random=["(1 + Days | Subject)"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = interlace.fit("Reaction ~ Days", _spark_frame(spark, df), random=["(1 + Days | Subject)"])
    assert r.llf == pytest.approx(eager.llf, rel=1e-10)
    np.testing.assert_allclose(r.fe_params, eager.fe_params, rtol=1e-8)
    np.testing.assert_allclose(r.fe_bse, eager.fe_bse, rtol=1e-5)
    assert r.nobs == eager.nobs
    with pytest.raises(ValueError, match="collect"):
        r.resid  # noqa: B018 (the property raises)


def test_spark_crossed_categorical_missing_and_iterative(spark):
    df = datasets.load("stroop")
    for c in df.columns:
        if isinstance(df[c].dtype, pd.CategoricalDtype):
            df[c] = df[c].astype(str)
    df.loc[[3, 50], "rt"] = np.nan
    kw = dict(random=["(1 | subject)", "(1 | item)"])
    sdf = _spark_frame(spark, df)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for solver in ("exact", "iterative"):
            eager = interlace.fit("rt ~ condition", df, solver=solver, **kw)
            r = interlace.fit("rt ~ condition", sdf, solver=solver, **kw)
            assert r.n_dropped == 2 and r.nobs == eager.nobs
            assert r.optimizer_info["solver"] == solver
            np.testing.assert_allclose(r.fe_params, eager.fe_params, rtol=1e-8)
            np.testing.assert_allclose(r.fe_bse, eager.fe_bse, rtol=1e-5)
