"""Fits that overlap in threads leave the process's BLAS thread count as they found it."""

from __future__ import annotations

import threading

from threadpoolctl import ThreadpoolController, threadpool_info

import interlace
from interlace import datasets


def _blas_threads() -> list[int]:
    return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]


def test_concurrent_fits_restore_the_blas_limit():
    df = datasets.load("sleepstudy")
    with ThreadpoolController().limit(limits=2, user_api="blas"):
        before = _blas_threads()
        assert before and all(n == 2 for n in before)
        for _ in range(3):
            def one():
                interlace.fit("Reaction ~ Days", df, random=["(Days | Subject)"])

            threads = [threading.Thread(target=one) for _ in range(3)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert _blas_threads() == before
