"""A dependency-free progress bar on standard error for long loops."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")

__all__ = ["progress"]


def progress(items: Iterable[T], total: int, label: str, enabled: bool = True) -> Iterator[T]:
    """Yield ``items``, drawing ``label [####    ] k/total`` on stderr when ``enabled``."""
    start = time.perf_counter()
    width = 24
    for k, item in enumerate(items, start=1):
        yield item
        if enabled and (k == total or k % max(1, total // 50) == 0):
            done = int(width * k / total)
            elapsed = time.perf_counter() - start
            sys.stderr.write(f"\r{label} [{'#' * done}{' ' * (width - done)}] {k}/{total} {elapsed:.1f}s")
            if k == total:
                sys.stderr.write("\n")
            sys.stderr.flush()
