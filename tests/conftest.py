"""Shared fixtures: the R reference cases (../shared/fixtures when present, else tests/data)."""

from __future__ import annotations

import json
import pathlib

import pandas as pd
import pytest

HERE = pathlib.Path(__file__).parent
CANDIDATES = [HERE.parent.parent / "shared" / "fixtures", HERE / "data" / "fixtures"]
FIXTURES = next((p for p in CANDIDATES if (p / "cases").is_dir()), None)


def load_cases() -> list[dict]:
    if FIXTURES is None:
        return []
    return [json.loads(p.read_text()) for p in sorted((FIXTURES / "cases").glob("*.json"))]


def load_data(case: dict) -> pd.DataFrame:
    """The case's CSV with R's factor columns as ordered-level pandas Categoricals."""
    df = pd.read_csv(FIXTURES / "data" / case["data"])
    for col, levels in (case.get("categorical") or {}).items():
        if col in df:
            df[col] = pd.Categorical(df[col].astype(str), categories=[str(v) for v in levels])
    return df


@pytest.fixture(scope="session")
def sleepstudy() -> pd.DataFrame:
    case = next((c for c in load_cases() if c["data"] == "sleepstudy.csv"), None)
    if case is None:
        pytest.skip("reference fixtures not found")
    return load_data(case)
