"""nutpie chains in parallel processes.

nutpie runs chains as threads; with a log-density written in Python (the marginal model's Op)
they take turns on the interpreter lock, so two chains take twice as long as one. Where the
platform can fork, the compiled model is forked into one process per core after compilation
(nothing is re-imported or recompiled), each process samples its share of the chains, and the
draws come back through a pipe and are joined along the chain dimension.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import pickle
import traceback

import numpy as np

__all__ = ["sample_nutpie"]


def _split_chains(chains: int, workers: int) -> list[int]:
    base, extra = divmod(chains, workers)
    return [base + (i < extra) for i in range(workers) if base + (i < extra) > 0]


def _as_arrays(idata) -> dict:
    """Posterior and sample-stats arrays of a nutpie result (plain numpy, picklable)."""
    out = {"posterior": {}, "sample_stats": {}}
    for group in out:
        ds = getattr(idata, group)
        for name, da in ds.data_vars.items():
            out[group][name] = (tuple(da.dims), np.asarray(da.values))
    return out


def _nutpie_run(compiled, chains: int, cores: int, opts, seed, progress: bool):
    import nutpie

    return nutpie.sample(
        compiled,
        draws=opts.draws,
        tune=opts.tune,
        chains=chains,
        cores=cores,
        seed=seed,
        progress_bar=progress,
        save_warmup=False,
        low_rank_modified_mass_matrix=opts.extra.get("low_rank", False),
        target_accept=opts.target_accept,
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


def sample_nutpie(flat, opts, cores: int):
    """Sample a :class:`~.flat.FlatModel` with nutpie, one forked process per core when possible."""
    compiled = flat.nutpie_model()
    workers = min(cores, opts.chains)
    seeds = np.random.SeedSequence(opts.random_seed).generate_state(max(1, workers))
    if workers <= 1 or "fork" not in mp.get_all_start_methods():
        return _nutpie_run(compiled, opts.chains, max(1, cores), opts, int(seeds[0]), opts.progressbar)
    ctx = mp.get_context("fork")
    shares = _split_chains(opts.chains, workers)
    procs, pipes = [], []
    for i, n_chains in enumerate(shares):
        recv, send = ctx.Pipe(duplex=False)

        def work(n_chains=n_chains, seed=int(seeds[i]), send=send, show=opts.progressbar and i == 0):
            try:
                payload = ("ok", _as_arrays(_nutpie_run(compiled, n_chains, 1, opts, seed, show)))
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
    parts, errors = [], []
    for p, recv in zip(procs, pipes, strict=True):
        try:
            status, payload = pickle.loads(recv.recv_bytes())
        except EOFError:
            status, payload = "error", "a sampling process ended without sending its draws"
        p.join()
        (parts if status == "ok" else errors).append(payload)
    if errors:
        raise RuntimeError(f"nutpie sampling failed in a worker process:\n{errors[0]}")
    return _join(parts, flat.coords)
