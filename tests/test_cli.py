"""The command line, driven through subprocess as a user would."""

from __future__ import annotations

import io
import json
import pathlib
import subprocess
import sys

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
    assert bad.returncode == 2 and "--link applies to --model glmer" in bad.stderr
