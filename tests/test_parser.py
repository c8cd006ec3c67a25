"""The lme4 random-term parser and the designs it builds."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import interlace
from interlace.model.formula import groups_to_terms, parse_random, split_formula


def terms(spec):
    return [(t.expr, t.factors) for t in parse_random(spec)]


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("(1 | g)", [("1", ("g",))]),
        ("(x | g)", [("x", ("g",))]),
        ("(0 + x | g)", [("0 + x", ("g",))]),
        ("(1 + x + z | g)", [("1 + x + z", ("g",))]),
        ("(0 + f | g)", [("0 + f", ("g",))]),
        ("(x || g)", [("1", ("g",)), ("0 + x", ("g",))]),
        ("(x + z || g)", [("1", ("g",)), ("0 + x", ("g",)), ("0 + z", ("g",))]),
        ("(0 + x || g)", [("0 + x", ("g",))]),
        ("(1 | a/b)", [("1", ("a",)), ("1", ("a", "b"))]),
        ("(1 | a/b/c)", [("1", ("a",)), ("1", ("a", "b")), ("1", ("a", "b", "c"))]),
        ("(1 | a:b)", [("1", ("a", "b"))]),
        ("(x | a/b)", [("x", ("a",)), ("x", ("a", "b"))]),
        ("(1|a) + (1|b)", [("1", ("a",)), ("1", ("b",))]),
        ("1 | g", [("1", ("g",))]),
        ("((1 | g))", [("1", ("g",))]),
    ],
)
def test_lme4_syntax(spec, expected):
    assert terms(spec) == expected


def test_group_names_and_lists():
    t = parse_random(["(1 | a:b)", "(1 | c)"])
    assert [x.group for x in t] == ["a:b", "c"]
    assert groups_to_terms("g") == ["(1 | g)"]
    assert groups_to_terms(["a", "b"]) == ["(1 | a)", "(1 | b)"]
    assert parse_random(None) == []


def test_split_formula_pulls_out_random_terms():
    assert split_formula("y ~ x + (1 | g)") == ("y ~ x", ["(1 | g)"])
    assert split_formula("y ~ x + (x | g) + (1|h) + log(z)") == ("y ~ x + log(z)", ["(x | g)", "(1|h)"])
    assert split_formula("y ~ (1 | g)") == ("y ~ 1", ["(1 | g)"])


@pytest.mark.parametrize(
    "spec, message",
    [
        ("(1 g)", "no '\\|'"),
        ("( | g)", "nothing before"),
        ("(1 | )", "no grouping factor"),
        ("(1 | g", "unbalanced"),
        ("(1 | 3x)", "not a column name"),
        ("(1 | g | h)", "more than one"),
        ("", "empty"),
    ],
)
def test_malformed_terms(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_random(spec)


@pytest.mark.parametrize("bad", [42, [1], {"a": 1}])
def test_non_strings(bad):
    with pytest.raises(TypeError):
        parse_random(bad)


def test_formula_errors():
    with pytest.raises(ValueError, match="no '~'"):
        split_formula("y x")
    with pytest.raises(ValueError, match="no response"):
        split_formula(" ~ x")
    with pytest.raises(TypeError):
        split_formula(3)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(1)
    n_a, n_b, per = 8, 3, 10
    a = np.repeat(np.arange(n_a), n_b * per)
    b = np.tile(np.repeat(np.arange(n_b), per), n_a)
    f = rng.choice(["u", "v", "w"], a.size)
    x = rng.normal(size=a.size)
    y = 1 + x + rng.normal(size=n_a)[a] + rng.normal(size=(n_a, n_b))[a, b] + rng.normal(size=a.size)
    y = y + 0.5 * rng.normal(size=n_a)[a] * x + pd.Series(f).map({"u": 0.0, "v": 1.0, "w": -1.0}).to_numpy()
    return pd.DataFrame({"y": y, "x": x, "f": f, "a": [f"a{i}" for i in a], "b": [f"b{i}" for i in b]})


def test_designs_have_lme4_columns(data):
    r = interlace.fit("y ~ x", data, random=["(x | a)"])
    assert list(r.random_effects["a"].columns) == ["(Intercept)", "x"]
    assert r.variance_components["a"].shape == (2, 2)
    assert r.theta.size == 3

    r = interlace.fit("y ~ x", data, random=["(0 + f | a)"])
    vc = r.variance_components["a"]
    assert list(vc.columns) == ["f[u]", "f[v]", "f[w]"] and vc.shape == (3, 3)
    assert r.theta.size == 6

    r = interlace.fit("y ~ x", data, random=["(x || a)"])
    vc = r.variance_components  # lme4's VarCorr names: a, a.1
    assert set(vc) == {"a", "a.1"} and isinstance(vc["a"], float) and isinstance(vc["a.1"], float)
    assert r.varcov.loc["a:(Intercept)", "a:x"] == 0.0
    assert list(r.random_effects["a"].columns) == ["(Intercept)", "x"]
    assert r.theta.size == 2

    r = interlace.fit("y ~ x", data, random=["(1 | a/b)"])
    assert set(r.variance_components) == {"a", "a:b"}
    assert r.ngroups == {"a:b": 24, "a": 8}
    assert str(r.random_effects["a:b"].index[0]) == "a0:b0"

    r = interlace.fit("y ~ x", data, random=["(0 + x | a)"])
    assert list(r.random_effects["a"].columns) == ["x"]
    assert isinstance(r.variance_components["a"], float)


def test_same_model_three_ways(data):
    a = interlace.fit("y ~ x", data, groups=["a"], random=["(1 | a:b)"])
    b = interlace.fit("y ~ x", data, random=["(1 | a/b)"])
    c = interlace.fit("y ~ x + (1 | a) + (1 | a:b)", data)
    assert a.llf == pytest.approx(b.llf, rel=1e-10) and b.llf == pytest.approx(c.llf, rel=1e-10)
    d = interlace.fit("y ~ x", data, random=["(x || a)"])
    e = interlace.fit("y ~ x", data, random=["(1 | a)", "(0 + x | a)"])
    assert d.llf == pytest.approx(e.llf, rel=1e-10)


def test_bad_terms_through_fit(data):
    with pytest.raises(ValueError, match=r"\(x a\)"):
        interlace.fit("y ~ x", data, random=["(x a)"])
    with pytest.raises(KeyError, match="nope"):
        interlace.fit("y ~ x", data, random=["(1 | nope)"])
    with pytest.raises(KeyError, match="zz"):
        interlace.fit("y ~ x", data, random=["(zz | a)"])
    with pytest.raises(ValueError, match="no columns"):
        interlace.fit("y ~ x", data, random=["(0 | a)"])
