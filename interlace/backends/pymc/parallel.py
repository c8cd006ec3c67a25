"""nutpie chains, one seed each, in parallel processes, with one progress display.

Every chain is its own ``nutpie.sample(chains=1, seed=<the chain's seed>)`` run, so its draws
depend on the chain's seed alone: the same ``random_seed`` gives the same draws whether the
chains run one after another (``cores=1``) or side by side.

nutpie runs chains as threads; with a log-density written in Python (the marginal model's Op)
they take turns on the interpreter lock, so two chains take twice as long as one. Where the
platform can fork, the compiled model is forked into one process per core after compilation
(nothing is re-imported or recompiled), each process samples its share of the chains, and the
draws come back through a pipe and are joined along the chain dimension in chain order.

Progress: the model's expand function runs once per iteration (tuning included), so each chain
counts its iterations into a shared array that the parent process shows
(:mod:`.progress`); nutpie's own display is off (it shows only in terminals, and would draw one
bar per process).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import pickle
import threading
import traceback
from multiprocessing.connection import wait

import numpy as np

from .progress import SamplingProgress

__all__ = ["sample_nutpie"]

POLL_SECONDS = 0.2


def _split_chains(chains: int, workers: int) -> list[list[int]]:
    """Chain indices per worker: contiguous runs, as even as possible."""
    base, extra = divmod(chains, workers)
    out, start = [], 0
    for i in range(workers):
        n = base + (i < extra)
        if n:
            out.append(list(range(start, start + n)))
        start += n
    return out


def _as_arrays(idata) -> dict:
    """Posterior and sample-stats arrays of a nutpie result (plain numpy, picklable)."""
    out = {"posterior": {}, "sample_stats": {}}
    for group in out:
        ds = getattr(idata, group)
        for name, da in ds.data_vars.items():
            out[group][name] = (tuple(da.dims), np.asarray(da.values))
    return out


def _run_chain(flat, opts, seed: int, counter, index: int) -> dict:
    """One chain, seeded with ``seed``; its iterations are counted into ``counter[index]``."""
    import nutpie

    def tick():
        counter[index] += 1

    return _as_arrays(
        nutpie.sample(
            flat.nutpie_model(on_iteration=tick),
            draws=opts.draws,
            tune=opts.tune,
            chains=1,
            cores=1,
            seed=int(seed),
            progress_bar=False,
            save_warmup=False,
            low_rank_modified_mass_matrix=flat.low_rank_mass_matrix,
            target_accept=opts.target_accept,
        )
    )


def _join(parts: list[dict], coords: dict):
    import arviz as az
    import xarray as xr

    groups = {}
    for group in ("posterior", "sample_stats"):
        data = {}
        for name in parts[0][group]:
            dims = parts[0][group][name][0]
            arr = np.concatenate([p[group][name][1] for p in parts], axis=0)
            c = {d: coords[d] for d in dims[2:] if d in coords}
            data[name] = xr.DataArray(arr, dims=dims, coords=c)
        ds = xr.Dataset(data)
        ds = ds.assign_coords(chain=np.arange(ds.sizes["chain"]), draw=np.arange(ds.sizes["draw"]))
        groups[group] = ds
    return az.InferenceData(**groups)


def _in_thread(flat, opts, seeds: list[int], counter, progress: SamplingProgress) -> list[dict]:
    """All chains one after another in a worker thread while this thread shows the progress."""
    parts: list[dict] = []
    failure: list[BaseException] = []

    def work():
        try:
            for c, seed in enumerate(seeds):
                parts.append(_run_chain(flat, opts, seed, counter, c))
        except BaseException as ex:  # noqa: BLE001 - re-raised in the caller's thread
            failure.append(ex)

    th = threading.Thread(target=work, daemon=True)
    th.start()
    while th.is_alive():
        th.join(POLL_SECONDS)
        progress.update(counter)
    if failure:
        raise failure[0]
    return parts


def _in_processes(flat, opts, seeds: list[int], workers: int, progress: SamplingProgress) -> list[dict]:
    """Each worker process samples its chains; the parent shows the progress and collects."""
    ctx = mp.get_context("fork")
    counter = ctx.Array("q", len(seeds), lock=False)
    procs, pipes, owned = [], [], {}
    for chains in _split_chains(len(seeds), workers):
        recv, send = ctx.Pipe(duplex=False)

        def work(chains=chains, send=send):
            try:
                payload = ("ok", [_run_chain(flat, opts, seeds[c], counter, c) for c in chains])
            except BaseException:  # noqa: BLE001 - reported to the parent
                payload = ("error", traceback.format_exc())
            send.send_bytes(pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL))
            send.close()
            os._exit(0)

        p = ctx.Process(target=work, daemon=True)
        p.start()
        send.close()
        procs.append(p)
        pipes.append(recv)
        owned[recv] = chains
    results: dict[int, dict] = {}
    errors = []
    pending = list(pipes)
    while pending:
        for recv in wait(pending, timeout=POLL_SECONDS):
            pending.remove(recv)
            try:
                status, payload = pickle.loads(recv.recv_bytes())
            except EOFError:
                status, payload = "error", "a sampling process ended without sending its draws"
            if status == "ok":
                results.update(zip(owned[recv], payload, strict=True))
            else:
                errors.append(payload)
        progress.update(counter)
    for p in procs:
        p.join()
    if errors:
        raise RuntimeError(f"nutpie sampling failed in a worker process:\n{errors[0]}")
    return [results[c] for c in range(len(seeds))]


def sample_nutpie(flat, opts, cores: int, seeds: list[int]):
    """Sample a :class:`~.flat.FlatModel` with nutpie, chain c from ``seeds[c]``, on up to
    ``cores`` processes (see the module docstring)."""
    workers = min(cores, len(seeds))
    progress = SamplingProgress(len(seeds), opts.tune + opts.draws, enabled=opts.progressbar)
    try:
        if workers <= 1 or "fork" not in mp.get_all_start_methods():
            parts = _in_thread(flat, opts, seeds, [0] * len(seeds), progress)
        else:
            parts = _in_processes(flat, opts, seeds, workers, progress)
    finally:
        progress.close()
    return _join(parts, flat.coords)
