"""A BLAS thread limit scoped to the fits running in this process.

threadpoolctl's limits are process-wide: two fits that overlap in threads, each saving and
restoring the limit on its own, can restore in the wrong order and leave BLAS limited for the
rest of the process. Here one reference count is shared by every fit: the first fit to enter
saves the BLAS state and sets the limit, the last to leave restores what the first found.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator

__all__ = ["blas_limit", "fit_blas_threads"]

_lock = threading.Lock()
_active = 0
_saved = None  # the threadpoolctl controller holding the state before the first fit
_controller: list = []  # made once: inspecting the loaded libraries costs ~3 ms each time


def _libraries():
    from threadpoolctl import ThreadpoolController

    if not _controller:
        _controller.append(ThreadpoolController())
    return _controller[0]


@contextlib.contextmanager
def blas_limit(n: int) -> Iterator[None]:
    """Limit BLAS/LAPACK to ``n`` threads while the block runs (``n <= 0``: no limit).

    Concurrent blocks share one limit (the first one's ``n``); the state found before the first
    block is restored when the last one leaves, whatever the order they finish in.
    """
    global _active, _saved
    if n <= 0:
        yield
        return
    try:
        import threadpoolctl  # noqa: F401
    except ImportError:  # pragma: no cover - threadpoolctl is a dependency
        yield
        return
    with _lock:
        if _active == 0:
            controller = _libraries()
            _saved = controller.info()
            controller.limit(limits=n, user_api="blas")
        _active += 1
    try:
        yield
    finally:
        with _lock:
            _active -= 1
            if _active == 0 and _saved is not None:
                controller = _libraries()
                for lib in controller.lib_controllers:
                    for info in _saved:
                        if info.get("filepath") == lib.filepath:
                            lib.set_num_threads(info["num_threads"])
                _saved = None


def fit_blas_threads() -> contextlib.AbstractContextManager:
    """The REML engine's limit: one BLAS thread while fitting (``INTERLACE_BLAS_THREADS``
    overrides it, 0 for no limit). The dense blocks are small (10²–10³ rows) and interleaved with
    single-threaded numpy work; on 2 cores OpenBLAS's spinning threads slow that down about 2×
    (docs/performance.md)."""
    return blas_limit(int(os.environ.get("INTERLACE_BLAS_THREADS", "1")))
