"""The command line, driven through subprocess as a user would."""

from __future__ import annotations

import io
import json
import pathlib
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from conftest import FIXTURES


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "interlace.cli", *args], capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def case():
    if FIXTURES is None:
        pytest.skip("reference fixtures not found")
    return json.loads((FIXTURES / "cases" / "sleepstudy_slopes_reml.json").read_text())


def test_fit_json_matches_lme4(case):
    data = str(FIXTURES / "data" / "sleepstudy.csv")
    out = run("fit", data, "--formula", "Reaction ~ Days", "--random", "(Days | Subject)", "--output", "json")
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout)
    for name, est in case["fixef"].items():
        got = res["fixed_effects"][name]
        assert got["estimate"] == pytest.approx(est, rel=1e-4)
        assert got["std_error"] == pytest.approx(case["se"][name], rel=2e-3)
        assert got["df"] == pytest.approx(case["df_satterthwaite"][name], rel=1e-2)
    assert res["logLik"] == pytest.approx(case["loglik"], rel=1e-6)
    assert res["nobs"] == 180 and res["converged"] is True
    assert res["method"] == "REML"


def test_fit_csv_and_text_and_out_file(case, tmp_path):
    data = str(FIXTURES / "data" / "sleepstudy.csv")
    out = run("fit", data, "--formula", "Reaction ~ Days", "--groups", "Subject", "--output", "csv")
    assert out.returncode == 0, out.stderr
    table = pd.read_csv(io.StringIO(out.stdout))
    assert list(table.columns) == ["term", "estimate", "std_error", "df", "statistic", "p_value"]
    assert list(table["term"]) == ["(Intercept)", "Days"]
    target = tmp_path / "summary.txt"
    out = run(
        "fit",
        data,
        "--formula",
        "Reaction ~ Days",
        "--groups",
        "Subject",
        "--method",
        "ML",
        "--out",
        str(target),
    )
    assert out.returncode == 0 and out.stdout == ""
    text = target.read_text()
    assert "maximum likelihood" in text and "Subject" in text and "Fixed effects" in text


@pytest.mark.parametrize(
    "args, message",
    [
        (["fit", "missing.csv", "--formula", "y ~ x", "--groups", "g"], "does not exist"),
        (["fit", "{data}", "--formula", "Reaction ~ Dayz", "--groups", "Subject"], "Dayz"),
        (["fit", "{data}", "--formula", "Reaction ~ Days", "--random", "(Days Subject)"], "\\|"),
        (["fit", "{data}", "--formula", "Reaction ~ Days", "--groups", "Nobody"], "Nobody"),
        (["fit", "{text}", "--formula", "y ~ x", "--groups", "g"], "not numeric"),
        (["fit", "{bad}", "--formula", "y ~ x", "--groups", "g"], "unsupported"),
    ],
)
def test_bad_input_exits_2_with_one_line(args, message, tmp_path):
    bad = tmp_path / "data.xlsx"
    bad.write_text("x")
    text = tmp_path / "text.csv"
    text.write_text("y,x,g\n" + "".join(f"v{i},{i},{i % 3}\n" for i in range(12)))
    args = [a.format(data=FIXTURES / "data" / "sleepstudy.csv", bad=bad, text=text) for a in args]
    out = run(*args)
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("interlace: error:")
    assert pytest.importorskip("re").search(message, lines[0])


def test_help_warns_about_untrusted_formulas():
    out = run("fit", "--help")
    assert out.returncode == 0
    assert "untrusted" in out.stdout


@pytest.mark.slow  # samples with PyMC
def test_demo_shows_a_fit():
    out = run("demo")
    assert out.returncode == 0, out.stderr
    assert "Random effects" in out.stdout and "Subject" in out.stdout and "Days" in out.stdout


def test_glmer_through_the_cli(tmp_path):
    if FIXTURES is None:
        pytest.skip("reference fixtures not found")
    out = run("fit", str(FIXTURES / "data" / "cbpp.csv"), "--model", "glmer", "--family", "binomial",
              "--formula", "prop ~ C(period)", "--groups", "herd", "--weights", "size", "--output", "json")
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout)
    assert res["fixed_effects"]["(Intercept)"]["estimate"] == pytest.approx(-1.3985, abs=1e-3)


def test_glmer_link_and_offset_through_the_cli():
    data = pathlib.Path(__file__).parent / "data" / "extra" / "data" / "negbin_offset.csv"
    out = run("fit", str(data), "--model", "glmer", "--family", "negative_binomial", "--offset", "logt",
              "--formula", "y ~ x", "--groups", "g", "--link", "log", "--output", "json")
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout)
    case = json.loads((data.parents[1] / "cases" / "negbin_offset.json").read_text())
    assert res["fixed_effects"]["x"]["estimate"] == pytest.approx(case["tight"]["fixef"]["x"], rel=1e-4)
    bad = run("fit", str(data), "--formula", "y ~ x", "--groups", "g", "--link", "log")
    assert bad.returncode == 2 and "--link applies to --model glmer and clmm, not --model fit" in bad.stderr


CLMM = pathlib.Path(__file__).parent / "data" / "clmm"


@pytest.mark.parametrize(
    "model, extra, message",
    [
        ("glmer", ["--method", "REML"], "--method applies to --model fit, not --model glmer: glmer fits by"),
        ("glmer", ["--df-method", "kenward-roger"], "--df-method applies to --model fit, not --model glmer"),
        ("clmm", ["--method", "ML"], "--method applies to --model fit, not --model clmm"),
        ("clmm", ["--df-method", "satterthwaite"], "--df-method applies to --model fit, not --model clmm"),
        ("clmm", ["--weights", "x"], "interlace.clmm takes no prior weights"),
        ("clmm", ["--offset", "x"], "--offset applies to --model fit and glmer, not --model clmm"),
        ("coxme", ["--link", "log"], "--link applies to --model glmer and clmm, not --model coxme"),
        ("fit", ["--family", "poisson"], "--family applies to --model glmer, not --model fit"),
        ("fit", ["--draws", "10"], "--draws configures the PyMC sampler and has no meaning for --backend"),
        ("fit", ["--seed", "1", "--chains", "2"], "--chains configures the PyMC sampler"),
        ("fit", ["--backend", "pymc", "--method", "REML"], "--method has no meaning for --backend pymc"),
        ("fit", ["--backend", "pymc", "--df-method", "satterthwaite"], "--df-method has no meaning for"),
    ],
)
def test_every_option_is_honoured_or_refused(model, extra, message):
    args = ["fit", str(CLMM / "sim_probit.csv"), "--model", model, "--formula", "y ~ x", "--groups", "subj",
            *extra]
    if model == "glmer":
        args += ["--family", "poisson"]
    out = run(*args)
    assert out.returncode == 2, out.stdout
    assert message in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_clmm_link_thresholds_in_csv_and_json_match_ordinal():
    """--link probit reaches clmm; the CSV and JSON carry the thresholds (ordinal::clmm,
    tests/r/make_clmm_multi.R)."""
    case = json.loads((CLMM / "clmm_multi.json").read_text())["sim_probit_crossed"]
    args = ["fit", str(CLMM / "sim_probit.csv"), "--model", "clmm", "--link", "probit",
            "--formula", "y ~ x + grp", "--random", "(1 | subj)", "(1 | item)"]
    out = run(*args, "--output", "csv")
    assert out.returncode == 0, out.stderr
    table = pd.read_csv(io.StringIO(out.stdout)).set_index("term")
    names = list(case["thresholds"])
    assert list(table.index[: len(names)]) == names
    np.testing.assert_allclose(table.loc[names, "estimate"], list(case["thresholds"].values()), rtol=1e-4)
    np.testing.assert_allclose(table.loc[names, "std_error"], [case["se"][n] for n in names], rtol=2e-3)
    assert table.loc[names, "p_value"].isna().all()  # ordinal's threshold table has z, no p
    assert table.loc["x", "estimate"] == pytest.approx(case["beta"]["x"], rel=1e-4)
    out = run(*args, "--output", "json")
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout)
    assert res["formula"] == "y ~ x + grp + (1 | subj) + (1 | item)" and res["method"] == "ML"
    assert res["thresholds"]["1|2"]["estimate"] == pytest.approx(case["thresholds"]["1|2"], rel=1e-4)
    assert res["logLik"] == pytest.approx(case["loglik"], rel=1e-6)


def test_coxme_json_has_formula_and_method():
    if FIXTURES is None:
        pytest.skip("reference fixtures not found")
    out = run("fit", str(FIXTURES / "data" / "rats.csv"), "--model", "coxme", "--formula",
              "Surv(time, status) ~ rx + (1 | litter)", "--output", "json")
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout)
    assert res["formula"] == "Surv(time, status) ~ rx + (1 | litter)" and res["method"] == "ML"
    assert "thresholds" not in res and res["fixed_effects"]["rx"]["estimate"] > 0


@pytest.mark.slow  # samples with PyMC
def test_pymc_sampler_options_reach_the_sampler():
    pytest.importorskip("pymc")
    if FIXTURES is None:
        pytest.skip("reference fixtures not found")
    out = run("fit", str(FIXTURES / "data" / "sleepstudy.csv"), "--formula", "Reaction ~ Days",
              "--groups", "Subject", "--backend", "pymc", "--draws", "60", "--tune", "60", "--chains", "1",
              "--seed", "3", "--output", "json")
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout)
    assert res["method"].startswith("posterior (NUTS")
    assert 230 < res["fixed_effects"]["(Intercept)"]["estimate"] < 275
