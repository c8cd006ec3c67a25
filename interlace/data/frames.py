"""Input frames: read the needed columns of any narwhals-supported eager frame into pandas.

The caller's frame is never modified: columns are selected into a new frame. Rows with a
missing value in any used column (or in an array argument such as weights) are dropped, as
lme4's ``na.omit`` does, and counted.
"""

from __future__ import annotations

from dataclasses import dataclass

import narwhals as nw
import numpy as np
import pandas as pd

__all__ = ["ModelFrame", "model_frame", "to_pandas"]


@dataclass(frozen=True)
class ModelFrame:
    """The complete-case rows of the used columns, and which input rows they were."""

    data: pd.DataFrame
    keep: np.ndarray  # boolean mask over the input rows
    n_input: int
    native_namespace: str  # "pandas", "polars", "pyarrow", ...

    @property
    def n_dropped(self) -> int:
        return int(self.n_input - self.keep.sum())


def to_pandas(data, columns: list[str] | None = None) -> tuple[pd.DataFrame, str]:
    """Select ``columns`` of ``data`` (any narwhals eager frame, or a dict of arrays) into pandas."""
    if isinstance(data, dict):
        data = pd.DataFrame(data)
    if isinstance(data, pd.DataFrame):
        frame = (data if columns is None else data.loc[:, columns]).copy()
        frame.index = pd.RangeIndex(len(frame))  # our copy: no second copy by reset_index
        return frame, "pandas"
    try:
        nw_frame = nw.from_native(data, eager_only=True)
    except TypeError as ex:
        raise TypeError(
            "data must be a data frame (pandas, polars, pyarrow, or anything narwhals "
            f"supports as an eager frame), got {type(data).__name__}"
        ) from ex
    namespace = nw.get_native_namespace(nw_frame).__name__.split(".")[0]
    if columns is not None:
        nw_frame = nw_frame.select(columns)
    return nw_frame.to_pandas().reset_index(drop=True), namespace


def column_names(data) -> list[str]:
    """Column names of a frame narwhals reads eagerly, or of a dict of arrays; ``TypeError`` otherwise."""
    if isinstance(data, dict):
        return list(data)
    if isinstance(data, pd.DataFrame):
        return [str(c) for c in data.columns]
    try:
        return list(nw.from_native(data, eager_only=True).columns)
    except TypeError as ex:
        raise TypeError(
            "data must be a data frame (pandas, polars, pyarrow, or anything narwhals "
            f"supports as an eager frame), got {type(data).__name__}"
        ) from ex


def model_frame(data, columns: list[str], arrays: dict[str, np.ndarray] | None = None) -> ModelFrame:
    """Complete cases of ``columns`` (and of the named row-aligned ``arrays``) as a new pandas frame.

    Raises ``KeyError`` naming any column missing from ``data``.
    """
    available = column_names(data)
    missing = [c for c in columns if c not in available]
    if missing:
        raise KeyError(
            f"column(s) {missing} not found in data; available columns: {available[:20]}"
            + (" ..." if len(available) > 20 else "")
        )
    frame, namespace = to_pandas(data, list(dict.fromkeys(columns)))
    n = len(frame)
    keep = ~frame.isna().to_numpy().any(axis=1) if len(frame.columns) else np.ones(n, dtype=bool)
    for name, arr in (arrays or {}).items():
        if arr is None:
            continue
        if len(arr) != n:
            raise ValueError(f"{name} has length {len(arr)} but data has {n} rows; pass one value per row")
        keep &= ~pd.isna(arr)
    if n and not keep.any():
        empty = [c for c in frame.columns if frame[c].isna().all()]
        empty += [name for name, arr in (arrays or {}).items() if arr is not None and pd.isna(arr).all()]
        where = f"{empty} (entirely missing)" if empty else "the used columns (each row misses at least one)"
        raise ValueError(
            f"no rows left to fit: every row has a missing value in {where}; rows with missing "
            "values are dropped as R's na.omit does"
        )
    out = frame if keep.all() else frame.loc[keep].reset_index(drop=True)  # frame is our copy
    return ModelFrame(data=out, keep=keep, n_input=n, native_namespace=namespace)
