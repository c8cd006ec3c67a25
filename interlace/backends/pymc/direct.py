"""The marginal model's log-density written out directly, for nutpie: no pytensor graph per step.

With β and b integrated out (the default for Gaussian LMMs with Normal fixed-effect priors) the
sampler moves in σ and the random-effect scales only: σ (log scale), per scalar term its SD
(log scale), per vector term of size k its SDs s (log scale) and the k(k − 1)/2 canonical
partial correlations of its correlation matrix, each as z = atanh(u) (Lewandowski, Kurowicka &
Joe 2009; Stan's ``cholesky_factor_corr`` transform). Row i of the correlation's Cholesky
factor W is built from its partial correlations u_ij (j < i) as

    W_ij = u_ij √r_ij,   r_i,j+1 = r_ij − W_ij²  (r_i0 = 1),   W_ii = √r_ii,

and the covariance factor is L = diag(s)W — PyMC's ``LKJCholeskyCov`` prior (SDs from their
priors, the correlation LKJ(η)) in other coordinates. The unnormalised log-density is

    log p(y | θ, σ) + log p(σ) + Σ log p(s_i) + Σ_i (k − i + 2η − 3) log W_ii
        + Σ_(i>j) [log(1 − u_ij²) + ½ log r_ij] + Σ log s_i + log σ,   θ_t = L_t[rows, cols] / σ,

with the LKJ density of W (Stan's ``lkj_corr_cholesky``, i from 0) and the log-Jacobians of the
transforms. Sampling the scales apart from the correlations keeps the geometry close to
Gaussian: on the crossed subject × item design of benchmarks/pymc_vs_bambi.py (2 chains × 1000
draws, seeds 1–12) the worst bulk ESS went from 95–1139 (median 666) with PyMC's coordinates
(the packed factor L with a log diagonal) to 444–1144 (median 851). The gradient is by hand
(reverse mode through the rows above), the likelihood's from :class:`~.marginal.MarginalBase`
(∂/∂θ, ∂/∂σ) by the chain rule through θ = L/σ. The priors of σ and of the SDs must be among
:data:`SUPPORTED` with numeric parameters; otherwise, and for every other model,
:func:`direct_model` returns None and the compiled graph is used. The stored draws are PyMC's
variables (the packed L, SDs, correlations). Tested against PyMC's own log-density with the
Jacobian of the change of coordinates (tests/test_pymc_repro.py).
"""

from __future__ import annotations

import math

import numpy as np

from ...data.design import DesignMatrices, tril_colwise
from .flat import FlatModel, _numeric_start
from .priors import PriorSet, sd_key

__all__ = ["direct_model", "SUPPORTED"]

SUPPORTED = ("HalfNormal", "HalfStudentT", "HalfCauchy", "Exponential")


class _Positive:
    """log p(u) (up to a constant) and d/du for a positive prior, vectorised over parameters."""

    def __init__(self, priors):
        names = {p.dist for p in priors}
        if len(names) != 1 or next(iter(names)) not in SUPPORTED:
            raise ValueError("unsupported prior")
        self.dist = next(iter(names))
        keys = {"HalfNormal": ("sigma",), "HalfStudentT": ("nu", "sigma"), "HalfCauchy": ("beta",),
                "Exponential": ("lam",)}[self.dist]
        for p in priors:
            if set(p.params) != set(keys):
                raise ValueError("unsupported parameters")
        self.p = {k: np.array([float(p.params[k]) for p in priors]) for k in keys}

    def __call__(self, u: np.ndarray) -> tuple[float, np.ndarray]:
        p = self.p
        if self.dist == "HalfNormal":
            s2 = p["sigma"] ** 2
            return float(np.sum(-0.5 * u * u / s2)), -u / s2
        if self.dist == "HalfStudentT":
            nu, s2 = p["nu"], p["sigma"] ** 2
            return (float(np.sum(-0.5 * (nu + 1) * np.log1p(u * u / (nu * s2)))),
                    -(nu + 1) * u / (nu * s2 + u * u))
        if self.dist == "HalfCauchy":
            b2 = p["beta"] ** 2
            return float(np.sum(-np.log1p(u * u / b2))), -2 * u / (b2 + u * u)
        return float(np.sum(-p["lam"] * u)), -p["lam"] * np.ones_like(u)


class _Fn:
    """x ↦ [log-density, gradient, *stored variables]; ``copy()`` as a pytensor function has."""

    def __init__(self, parts, lmm, prior, sigma_prior, names, n_theta):
        self.parts, self.lmm, self.prior, self.sigma_prior = parts, lmm, prior, sigma_prior
        self.names, self.n_theta = names, n_theta

    def copy(self):
        return self

    def __call__(self, x: np.ndarray) -> list:
        x = np.asarray(x, dtype=float)
        grad = np.zeros_like(x)
        stored: dict[str, np.ndarray] = {}
        theta = np.zeros(self.n_theta)
        Ls = []
        logp = 0.0
        sigma = None
        for kind, name, sl, extra in self.parts:
            v = x[sl]
            if kind == "sigma":
                sigma = float(np.exp(v[0]))
                lp, d = self.sigma_prior(np.array([sigma]))
                logp += lp + v[0]
                grad[sl] = d * sigma + 1.0
                stored["sigma"] = np.array(sigma)
            elif kind == "sd":  # scalar term: its SD on the log scale
                sd = np.exp(v)
                lp, d = extra["prior"](sd)
                logp += lp + float(v[0])
                grad[sl] = d * sd + 1.0
                stored[name] = sd.reshape(())
                Ls.append((extra, sd.reshape(1, 1), sl))
            else:  # a vector term: log SDs and atanh partial correlations
                k, eta = extra["k"], extra["eta"]
                work = np.zeros(x.size)
                logp += _scale_corr_forward(x, sl.start, k, eta, *extra["codes"], 0, work)
                packed = work[sl].copy()
                L = np.zeros((k, k))
                L[extra["tril"]] = packed
                sd = np.sqrt(np.sum(L * L, axis=1))
                stored[name] = packed
                stored[extra["sd_name"]] = sd
                stored[extra["corr_name"]] = (L @ L.T) / np.outer(sd, sd)
                Ls.append((extra, L, sl))
        for extra, L, _ in Ls:
            rows, cols = extra["rc"]
            theta[extra["theta"]] = L[rows, cols] / sigma
        parts = self.lmm.logp_integrated(theta, sigma, self.prior)
        stored["theta"] = theta
        if not np.isfinite(parts.logp):
            return [-np.inf, np.zeros_like(x), *[stored[n] for n in self.names]]
        logp += parts.logp
        gt = parts.g_theta
        g_sigma = parts.g_sigma - float(gt @ theta) / sigma
        for kind, _, sl, _ in self.parts:
            if kind == "sigma":
                grad[sl] += g_sigma * sigma
        for extra, L, sl in Ls:
            k = L.shape[0]
            rows, cols = extra["rc"]
            dL = np.zeros((k, k))
            dL[rows, cols] = gt[extra["theta"]] / sigma
            if k == 1:
                grad[sl] += dL.ravel() * L.ravel()
                continue
            work = np.zeros(x.size)
            work[sl] = dL[extra["tril"]]
            _scale_corr_backward(x, sl.start, k, extra["eta"], *extra["codes"], 0, work, grad,
                                 np.empty(2 * k))
        return [logp, grad, *[stored[n] for n in self.names]]


def direct_model(model, design: DesignMatrices, layout, priors: PriorSet) -> FlatModel | None:
    """A :class:`~.flat.FlatModel` of the integrated marginal model without pytensor, or None
    when the model or its priors are outside what is written out here (see the module doc)."""
    if not layout.marginal or layout.beta_prior is None or layout.lmm is None:
        return None
    try:
        sigma_prior = _Positive([priors.sigma])
        by_label = {tl.label: (t, tl) for t, tl in zip(design.terms, layout.terms, strict=True)}
        start_vals = _numeric_start(model)
        if start_vals is None:
            return None
        parts, pos = [], 0
        for idx, (rv, sv) in enumerate(zip(model.free_RVs, list(start_vals), strict=True)):
            sl = slice(pos, pos + sv.size)
            pos += sv.size
            if rv.name == "sigma":
                parts.append(("sigma", "sigma", sl, None))
                continue
            label = rv.name.split("_", 1)[1]
            t, tl = by_label[label]
            extra = {
                "prior": _Positive([priors.sd[sd_key(t.group, c)] for c in t.columns]),
                "theta": t.theta_slice,
                "rc": tril_colwise(t.k),
                "ii": np.arange(t.k),
            }
            if rv.name == tl.sd_name and t.k == 1:
                parts.append(("sd", rv.name, sl, extra))
            elif rv.name == f"chol_{label}":
                pr = extra["prior"]
                pars = np.array([_params(pr, j) for j in range(t.k)], dtype=float)
                fams = np.full(t.k, FAMILY_CODE[pr.dist], dtype=np.int64)
                codes = (fams, pars[:, 0].copy(), pars[:, 1].copy())
                extra.update(k=t.k, tril=np.tril_indices(t.k), eta=float(priors.eta), sd_name=tl.sd_name,
                             corr_name=tl.corr_name, codes=codes)
                parts.append(("chol", rv.name, sl, extra))
                start_vals[idx] = _scale_corr_start(sv, t.k)
            else:
                return None
    except (ValueError, KeyError, TypeError):
        return None
    names = [v.name for v in model.free_RVs] + [v.name for v in model.deterministics]
    fn = _Fn(parts, layout.lmm, layout.beta_prior, sigma_prior, names, design.n_theta)
    start = np.concatenate([s.ravel() for s in start_vals])
    try:
        out = fn(start)
    except KeyError:  # a stored variable this function does not produce
        return None
    shapes = [tuple(np.shape(o)) for o in out[2:]]
    import pandas as pd

    dims = {n: tuple(model.named_vars_to_dims[n]) for n in names if n in model.named_vars_to_dims}
    used = {d for ds in dims.values() for d in ds}
    coords = {k: pd.Index(list(v)) for k, v in model.coords.items() if k in used and v is not None}
    for n, shape in zip(names, shapes, strict=True):
        if n not in dims and shape:
            dims[n] = tuple(f"{n}_dim_{j}" for j in range(len(shape)))
            coords.update({d: pd.RangeIndex(s) for d, s in zip(dims[n], shape, strict=True)})
    fast = _fast(fn, float(priors.eta))
    if fast is not None:
        # the compiled passes must reproduce the Python density and gradient at the start point;
        # evaluating them here also compiles them once, before the chains' processes are forked,
        # instead of once in every process
        got = fast(start)
        if not (np.isclose(got[0], out[0], rtol=1e-9) and np.allclose(got[1], out[1], rtol=1e-9, atol=1e-9)):
            fast = None
    return FlatModel(ndim=start.size, fn=fast or fn, names=names, shapes=shapes, dims=dims, coords=coords,
                     start=start, expand=fn if fast is not None else None, low_rank_mass_matrix=True)


# ---- the same density as compiled loops (numba), for the sampler's inner loop -----------------------
FAMILY_CODE = {"HalfNormal": 0, "HalfStudentT": 1, "HalfCauchy": 2, "Exponential": 3}


def _lp(fam, p1, p2, u):
    """log p(u) up to a constant and its derivative, for the family code ``fam``."""
    if fam == 0:
        return -0.5 * u * u / (p1 * p1), -u / (p1 * p1)
    if fam == 1:
        s2 = p2 * p2
        return -0.5 * (p1 + 1.0) * math.log1p(u * u / (p1 * s2)), -(p1 + 1.0) * u / (p1 * s2 + u * u)
    if fam == 2:
        return -math.log1p(u * u / (p1 * p1)), -2.0 * u / (p1 * p1 + u * u)
    return -p1 * u, -p1


def _prior_pass(x, grad, theta, work, sig_off, sig_fam, sig_p1, sig_p2, kind, ks, xoff, toff, coff, fam, p1,
                p2, eta):
    """Priors, transforms and their Jacobians (their gradient into ``grad``, zeros on entry, except
    for vector terms: :func:`_chain_rule` adds theirs) and θ into ``theta``; returns (log-density
    part, σ). ``work`` (like x) receives the packed factors L. Scalar loops only (cheap to compile)."""
    sigma = math.exp(x[sig_off])
    lp, d = _lp(sig_fam, sig_p1, sig_p2, sigma)
    logp = lp + x[sig_off]
    grad[sig_off] = d * sigma + 1.0
    for t in range(kind.size):
        k, xo, to, co = ks[t], xoff[t], toff[t], coff[t]
        if kind[t] == 0:
            sd = math.exp(x[xo])
            lp, d = _lp(fam[co], p1[co], p2[co], sd)
            logp += lp + x[xo]
            grad[xo] = d * sd + 1.0
            theta[to] = sd / sigma
            continue
        logp += _scale_corr_forward(x, xo, k, eta, fam, p1, p2, co, work)
        m = to
        for c in range(k):
            for r in range(c, k):
                theta[m] = work[xo + r * (r + 1) // 2 + c] / sigma
                m += 1
    return logp, sigma


def _chain_rule(x, grad, theta, sigma, g_theta, g_sigma, sig_off, kind, ks, xoff, toff, coff, fam, p1, p2,
                eta, work, tmp):
    """Add the likelihood's gradient (in θ, σ) to ``grad`` through θ = L/σ and the transforms, and
    the vector terms' prior gradient (:func:`_scale_corr_backward`); ``work`` is scratch like x."""
    total = g_sigma
    for m in range(theta.size):
        total -= g_theta[m] * theta[m] / sigma
    grad[sig_off] += total * sigma
    for t in range(kind.size):
        k, xo, to = ks[t], xoff[t], toff[t]
        if kind[t] == 0:
            grad[xo] += g_theta[to] * theta[to]  # ∂/∂log sd = (g/σ)·sd = g·θ
            continue
        m = to
        for c in range(k):
            for r in range(c, k):
                work[xo + r * (r + 1) // 2 + c] = g_theta[m] / sigma  # ∂/∂L, packed as L
                m += 1
        _scale_corr_backward(x, xo, k, eta, fam, p1, p2, coff[t], work, grad, tmp)


def _log1m_tanh2(z):
    """log(1 − tanh² z) without cancellation for large |z|."""
    a = abs(z)
    return 2.0 * (math.log(2.0) - a - math.log1p(math.exp(-2.0 * a)))


def _scale_corr_forward(x, xo, k, eta, fam, p1, p2, co, work):
    """One vector term: x[xo : xo + k] = log s, then the atanh partial correlations z_ij row by row
    (i > j). Writes L = diag(s)W packed (row-major lower triangle, PyMC's order) into
    ``work[xo :]`` and returns the term's log prior with the transforms' log-Jacobians."""
    logp = 0.0
    zpos = xo + k
    for i in range(k):
        s = math.exp(x[xo + i])
        lp, _ = _lp(fam[co + i], p1[co + i], p2[co + i], s)
        logp += lp + x[xo + i]
        r0 = xo + i * (i + 1) // 2
        rem = 1.0
        for j in range(i):
            z = x[zpos]
            zpos += 1
            u = math.tanh(z)
            w = u * math.sqrt(rem)
            logp += _log1m_tanh2(z) + 0.5 * math.log(rem)
            work[r0 + j] = s * w
            rem -= w * w
        wii = math.sqrt(rem)
        if i > 0:
            logp += (k - i + 2.0 * eta - 3.0) * math.log(wii)
        work[r0 + i] = s * wii
    return logp


def _scale_corr_backward(x, xo, k, eta, fam, p1, p2, co, gl, grad, tmp):
    """The gradient of :func:`_scale_corr_forward`'s log prior plus Σ gl·L (gl = ∂ℓ/∂L packed at
    ``gl[xo :]``) in x[xo : xo + k(k + 1)/2], written into ``grad``; ``tmp`` holds 2k scratch."""
    for i in range(k):
        s = math.exp(x[xo + i])
        _, d = _lp(fam[co + i], p1[co + i], p2[co + i], s)
        r0 = xo + i * (i + 1) // 2
        z0 = xo + k + i * (i - 1) // 2
        rem = 1.0
        gs = 0.0
        for j in range(i):  # the row again: u_j in tmp[j], r_j in tmp[k + j]
            u = math.tanh(x[z0 + j])
            tmp[j] = u
            tmp[k + j] = rem
            w = u * math.sqrt(rem)
            gs += gl[r0 + j] * w
            rem -= w * w
        wii = math.sqrt(rem)
        gs += gl[r0 + i] * wii
        grad[xo + i] = (d + gs) * s + 1.0
        if i == 0:
            continue
        g_wii = gl[r0 + i] * s + (k - i + 2.0 * eta - 3.0) / wii
        gr = g_wii / (2.0 * wii)  # adjoint of r_ii
        for j in range(i - 1, -1, -1):
            u, r = tmp[j], tmp[k + j]
            a = math.sqrt(r)
            w = u * a
            gw = gl[r0 + j] * s - 2.0 * w * gr
            gr += gw * u / (2.0 * a) + 0.5 / r
            grad[z0 + j] = gw * a * (1.0 - u * u) - 2.0 * u


def _scale_corr_start(packed_log_diag: np.ndarray, k: int) -> np.ndarray:
    """PyMC's coordinates of an LKJCholeskyCov value (packed L, log diagonal) → (log s, z)."""
    v = np.asarray(packed_log_diag, dtype=float).copy()
    diag = np.cumsum(np.arange(1, k + 1)) - 1
    v[diag] = np.exp(v[diag])
    L = np.zeros((k, k))
    L[np.tril_indices(k)] = v
    s = np.sqrt(np.sum(L * L, axis=1))
    W = L / s[:, None]
    z = []
    for i in range(1, k):
        rem = 1.0
        for j in range(i):
            u = float(np.clip(W[i, j] / np.sqrt(rem), -1 + 1e-12, 1 - 1e-12))
            z.append(np.arctanh(u))
            rem -= W[i, j] ** 2
    return np.concatenate([np.log(s), np.array(z)])


try:
    from numba import njit

    _lp = njit(cache=True, error_model="numpy")(_lp)
    _prior_pass = njit(cache=True, error_model="numpy")(_prior_pass)
    _log1m_tanh2 = njit(cache=True, error_model="numpy")(_log1m_tanh2)
    _scale_corr_forward = njit(cache=True, error_model="numpy")(_scale_corr_forward)
    _scale_corr_backward = njit(cache=True, error_model="numpy")(_scale_corr_backward)
    _chain_rule = njit(cache=True, error_model="numpy")(_chain_rule)
except ImportError:  # pragma: no cover - numba ships with pytensor
    pass


class _FastFn:
    """x ↦ [log-density, gradient] through the compiled passes around the likelihood."""

    def __init__(self, slow: _Fn, arrays: tuple):
        self.slow, self.arrays = slow, arrays
        self.lmm, self.prior = slow.lmm, slow.prior
        self.tmp = np.empty(2 * max(int(k) for k in (*arrays[5], 1)))

    def copy(self):
        return self

    def __call__(self, x: np.ndarray) -> list:
        a = self.arrays
        x = np.asarray(x, dtype=np.float64)
        grad, theta, work = np.zeros(x.size), np.zeros(self.slow.n_theta), np.empty(x.size)
        logp, sigma = _prior_pass(x, grad, theta, work, *a)
        parts = self.lmm.logp_integrated(theta, sigma, self.prior)
        if not np.isfinite(parts.logp):
            return [-np.inf, np.zeros_like(x)]
        _chain_rule(x, grad, theta, sigma, parts.g_theta, float(parts.g_sigma), a[0], *a[4:], work, self.tmp)
        return [logp + parts.logp, grad]


def _fast(slow: _Fn, eta: float) -> _FastFn | None:
    """The compiled version of ``slow`` (same parts), or None if a prior has no family code."""
    kind, ks, xoff, toff, coff, fam, p1, p2 = [], [], [], [], [], [], [], []
    sig = None
    for part_kind, _, sl, extra in slow.parts:
        if part_kind == "sigma":
            sp = slow.sigma_prior
            sig = (sl.start, FAMILY_CODE[sp.dist], *_params(sp, 0))
            continue
        pr = extra["prior"]
        kind.append(0 if part_kind == "sd" else 1)
        ks.append(extra.get("k", 1))
        xoff.append(sl.start)
        toff.append(extra["theta"].start)
        coff.append(len(fam))
        for j in range(len(next(iter(pr.p.values())))):
            fam.append(FAMILY_CODE[pr.dist])
            a, b = _params(pr, j)
            p1.append(a)
            p2.append(b)
    if sig is None:
        return None
    ints = [np.asarray(v, dtype=np.int64) for v in (kind, ks, xoff, toff, coff, fam)]
    arrays = (int(sig[0]), int(sig[1]), float(sig[2]), float(sig[3]), *ints[:5], ints[5],
              np.asarray(p1, dtype=float), np.asarray(p2, dtype=float), float(eta))
    return _FastFn(slow, arrays)


def _params(prior: _Positive, j: int) -> tuple[float, float]:
    """(p1, p2) of column j in :func:`_lp`'s convention."""
    p = prior.p
    if prior.dist == "HalfNormal":
        return float(p["sigma"][j]), 0.0
    if prior.dist == "HalfStudentT":
        return float(p["nu"][j]), float(p["sigma"][j])
    if prior.dist == "HalfCauchy":
        return float(p["beta"][j]), 0.0
    return float(p["lam"][j]), 0.0
