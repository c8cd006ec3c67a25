"""Every user mistake gets a clear ValueError / TypeError / KeyError naming the culprit."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import interlace

rng = np.random.default_rng(0)
N = 60
DF = pd.DataFrame(
    {
        "y": rng.normal(size=N),
        "x": rng.normal(size=N),
        "g": np.repeat([f"g{i}" for i in range(6)], 10),
        "h": np.tile([f"h{i}" for i in range(5)], 12),
        "s": ["a", "b", "c"] * 20,
        "t": np.tile(np.arange(10), 6),
        "const": "one",
        "ident": [f"i{i}" for i in range(N)],
        "inf": np.r_[np.inf, rng.normal(size=N - 1)],
        "w": rng.uniform(0.5, 1.5, N),
        "flag": [True, False] * 30,
    }
)


def case(exc, match, formula="y ~ x", data=None, **kw):
    return pytest.param(exc, match, formula, DF if data is None else data, kw, id=f"{exc.__name__}:{match}")


CASES = [
    # columns
    case(KeyError, "zz", "y ~ zz", groups="g"),
    case(KeyError, "yy", "yy ~ x", groups="g"),
    case(KeyError, "nope", groups="nope"),
    case(KeyError, "nope", random=["(1 | nope)"]),
    case(KeyError, "zz", random=["(zz | g)"]),
    case(KeyError, "ww", groups="g", weights="ww"),
    case(KeyError, "oo", groups="g", offset="oo"),
    case(KeyError, "tt", groups="g", correlation=interlace.AR1(time="tt", group="g")),
    case(KeyError, "gg", groups="g", correlation=interlace.CompoundSymmetry(group="gg")),
    case(KeyError, "nope", "y ~ x + (1 | nope)"),
    # formula and terms
    case(ValueError, "no '~'", "y x", groups="g"),
    case(ValueError, "no response", "~ x", groups="g"),
    case(TypeError, "formula", 42, groups="g"),
    case(ValueError, "no '\\|'", random=["(x g)"]),
    case(ValueError, "unbalanced", random=["(1 | g"]),
    case(ValueError, "nothing before", random=["( | g)"]),
    case(ValueError, "grouping factor", random=["(1 | )"]),
    case(ValueError, "not a column name", random=["(1 | 2g)"]),
    case(TypeError, "random=", random=42),
    case(TypeError, "random= entries", random=[1]),
    case(TypeError, "groups=", groups=42),
    case(ValueError, "no random-effects", groups=None),
    case(ValueError, "no columns", random=["(0 | g)"]),
    # types and values
    case(TypeError, "'s' is not numeric", "s ~ x", groups="g"),
    case(TypeError, "'const' is not numeric", "const ~ x", groups="g"),
    case(ValueError, "infinite", "inf ~ x", groups="g"),
    case(ValueError, "as many levels|levels for", groups="ident"),
    case(ValueError, "only 1 level", groups="const"),
    case(ValueError, "method", groups="g", method="XYZ"),
    case(TypeError, "method", groups="g", method=1),
    case(ValueError, "optimizer", groups="g", optimizer="newton"),
    case(ValueError, "df_method", groups="g", df_method="wald"),
    case(ValueError, "backend", groups="g", backend="stan"),
    case(ValueError, "theta0 has 3", groups="g", theta0=[1.0, 1.0, 1.0]),
    case(ValueError, "kenward-roger.*REML", groups="g", method="ML", df_method="kenward-roger"),
    case(TypeError, "correlation must be", groups="g", correlation="AR1"),
    # row-aligned arrays
    case(ValueError, "weights has length 3", groups="g", weights=[1.0, 2.0, 3.0]),
    case(ValueError, "offset has length 2", groups="g", offset=[1.0, 2.0]),
    case(ValueError, "weights must be finite and positive", groups="g", weights=-np.ones(N)),
    case(ValueError, "weights must be finite and positive", groups="g", weights=np.zeros(N)),
    case(ValueError, "one-dimensional", groups="g", weights=np.ones((N, 2))),
    case(TypeError, "weights must be numeric", groups="g", weights=np.array(["a"] * N)),
    case(ValueError, "offset must be finite", groups="g", offset=np.r_[np.inf, np.zeros(N - 1)]),
    # data
    case(TypeError, "data must be a data frame", data=[1, 2, 3], groups="g"),
    case(KeyError, "not in data", data=pd.DataFrame(), groups="g"),
    case(ValueError, "no rows left", data=DF.assign(y=np.nan), groups="g"),
    case(
        ValueError,
        "AR1 time column 't' has repeated values",
        groups="g",
        correlation=interlace.AR1(time="t", group="h"),
    ),
    case(ValueError, "needs group=", random=["(1 | g)", "(1 | h)"], correlation=interlace.CompoundSymmetry()),
]


@pytest.mark.parametrize("exc, match, formula, data, kw", CASES)
def test_clear_error(exc, match, formula, data, kw):
    with pytest.raises(exc, match=match):
        interlace.fit(formula, data, **kw)


def test_table_is_large():
    assert len(CASES) >= 40


def test_predict_errors():
    r = interlace.fit("y ~ x + s", DF, groups="g")
    with pytest.raises(KeyError, match="x"):
        r.predict(pd.DataFrame({"s": ["a"], "g": ["g0"]}))
    with pytest.raises(ValueError, match="s"):
        r.predict(pd.DataFrame({"x": [0.0], "s": ["zzz"], "g": ["g0"]}))
    with pytest.raises(KeyError, match="g"):
        r.predict(pd.DataFrame({"x": [0.0], "s": ["a"]}))
    # an unseen group level is the population prediction
    new = pd.DataFrame({"x": [0.3], "s": ["b"], "g": ["new"]})
    assert r.predict(new)[0] == pytest.approx(r.predict(new, include_re=False)[0])


def test_rank_deficient_fixed_effects_are_dropped_with_a_warning():
    d = DF.assign(x2=2 * DF["x"])
    with pytest.warns(UserWarning, match="rank deficient.*x2"):
        r = interlace.fit("y ~ x + x2", d, groups="g")
    assert list(r.fe_params.index) == ["(Intercept)", "x"]
    assert r.design.dropped_columns == ["x2"]



REFUSED = [
    ({"backend": "pymc", "method": "ML"}, "method='ML' has no meaning for backend='pymc'"),
    ({"backend": "pymc", "df_method": "kenward-roger"}, "df_method='kenward-roger' has no meaning"),
    ({"backend": "pymc", "optimizer": "bobyqa"}, "optimizer='bobyqa' has no meaning"),
    ({"draws": 500}, "draws=500 configures the PyMC sampler"),
    ({"random_seed": 1}, "random_seed=1 configures the PyMC sampler"),
    # the default's value passed explicitly is still an argument the backend cannot honour
    ({"backend": "pymc", "method": "REML"}, "method='REML' has no meaning for backend='pymc'"),
    ({"backend": "pymc", "optimizer": "lbfgsb"}, "optimizer='lbfgsb' has no meaning"),
    ({"draws": 1000}, "draws=1000 configures the PyMC sampler"),
    ({"sampler": "nutpie"}, "sampler='nutpie' configures the PyMC sampler"),
]


def test_defaults_left_alone_are_not_refused():
    """The marked signature defaults (model.arguments.default) pass on either backend, including
    through update(), which re-calls fit with the stored defaults."""
    from interlace import datasets

    df = datasets.load("sleepstudy")
    r = interlace.fit("Reaction ~ Days", df, groups="Subject", cores=None, priors=None, verbose=False)
    assert r.method == "REML" and isinstance(r.method, str)
    again = r.update(formula=". ~ . - Days")
    assert list(again.fe_params.index) == ["(Intercept)"]


@pytest.mark.parametrize("kw, match", REFUSED)
def test_fit_refuses_arguments_without_meaning_on_the_backend(kw, match):
    """An argument is honoured or refused, never silently ignored (checked before any sampling)."""
    from interlace import datasets

    with pytest.raises(ValueError, match=match):
        interlace.fit("Reaction ~ Days", datasets.load("sleepstudy"), random=["(Days | Subject)"], **kw)


@pytest.mark.parametrize("kw, match", [r for r in REFUSED if not {"method", "df_method"} & set(r[0])])
def test_glmer_refuses_arguments_without_meaning_on_the_backend(kw, match):
    from interlace import datasets

    df = datasets.load("sleepstudy")
    df["high"] = (df["Reaction"] > 300).astype(int)
    with pytest.raises(ValueError, match=match):
        interlace.glmer("high ~ Days", df, "binomial", random=["(1 | Subject)"], **kw)
