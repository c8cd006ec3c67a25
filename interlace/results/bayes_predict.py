"""Posterior prediction for new data (PyMC results): ``predict(newdata, ...)`` over the draws.

For each posterior draw s (β_s, θ_s, σ_s, b_s) and each row i of ``newdata``

    η_is = x_i'β_s + offset_i + Σ_t z_it'b_{t, level(i), s},

and the prediction is μ_is = g⁻¹(η_is) (``kind="mean"``, the expected response; η itself for a
Gaussian LMM) or a draw y_is from the model given μ_is (``kind="response"``, the posterior
predictive). A level seen in fitting uses its own draws b_s. A level not seen in fitting:

- ``new_groups="population"``: b = 0, the population prediction (lme4's
  ``allow.new.levels=TRUE``; what the REML ``predict`` does);
- ``new_groups="sample"``: a new b ~ N(0, σ_s²T_sT_s') per draw and per new level, so the
  prediction averages over groups drawn from the fitted population (bambi's
  ``sample_new_groups=True``): wider, and for a nonlinear link a different mean.

``output``: ``"mean"`` the posterior mean per row (an array, as ``predict`` always returns),
``"summary"`` a DataFrame of mean, sd and the equal-tailed ``level`` interval per row, or
``"draws"`` the (draws × rows) array.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..data.design import evaluate_expr, level_keys, rebuild_matrix, tril_colwise
from ..data.frames import to_pandas
from .bayes_after_fit import _posterior_sd, posterior_b
from .draws import posterior_arrays
from .lmm import _complete, _known, _new_fixed_matrix, _new_offset, _required_columns
from .verbs import RE_FORM_DEFAULT, resolve_re_form

__all__ = ["PosteriorPredict"]

KINDS = ("mean", "response")
NEW_GROUPS = ("population", "sample")
OUTPUTS = ("mean", "summary", "draws")


def _term_rows(d, t, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, list]:
    """(the term's model-matrix rows (n, k); level index per row: −1 unseen, −2 missing; the
    rows' level keys)."""
    missing = [f for f in t.factors if f not in frame.columns]
    if missing:
        raise KeyError(f"newdata lacks grouping column(s) {missing} for the term on {t.group!r}")
    needed = _required_columns(t.model_spec, frame, f"random term on {t.group!r}", _known(d))
    keep = _complete(frame, needed)
    index = {k: i for i, k in enumerate(t.keys)}
    keys = level_keys(frame, t.factors)
    idx = np.array([-2 if k is None else index.get(k, -1) for k in keys], dtype=np.int64)
    idx[~keep] = -2
    Xt = np.full((len(frame), t.k), np.nan)
    if keep.any():
        sub = frame.loc[keep].reset_index(drop=True)
        Xt[keep] = np.asarray(rebuild_matrix(t.model_spec, sub, f"random term on {t.group!r}"), dtype=float)
    return Xt, idx, keys


def _new_group_effects(t, Xt: np.ndarray, level: list, theta: np.ndarray, sd: np.ndarray,
                       rng: np.random.Generator) -> np.ndarray:
    """z'b for the rows of unseen levels: one b ~ N(0, σ_s²T_sT_s') per draw and new level,
    shared by the rows of that level."""
    codes = {k: i for i, k in enumerate(dict.fromkeys(level))}
    inverse = np.array([codes[k] for k in level])
    r, c = tril_colwise(t.k)
    T = np.zeros((theta.shape[0], t.k, t.k))
    T[:, r, c] = theta[:, t.theta_slice]
    z = rng.standard_normal((theta.shape[0], len(codes), t.k))
    bnew = np.einsum("sij,snj->sni", T, z) * sd[:, None, None]
    return np.einsum("rk,srk->sr", Xt, bnew[:, inverse])


class PosteriorPredict:
    """``predict`` of a PyMC result: per-draw predictions (see the module docstring)."""

    def predict(self, newdata=None, include_re: bool = True, offset=None, re_form=RE_FORM_DEFAULT,
                type=None, *,
                kind: str = "mean", new_groups: str = "population", output: str = "mean",
                level: float = 0.95, seed=None):
        """Posterior predictions for ``newdata`` (default: the fitted rows).

        ``kind`` "mean" (μ = g⁻¹(η), or η for an LMM) or "response" (y drawn given μ: the
        posterior predictive); ``new_groups`` "population" (unseen levels b = 0) or "sample"
        (new b drawn from each draw's random-effect distribution, bambi's
        ``sample_new_groups``); ``output`` "mean", "summary" or "draws". ``type`` ("response" /
        "link", a GLMM) is the scale of ``kind="mean"``. ``re_form``/``include_re`` as lme4.
        ``seed`` seeds the draws of new groups and responses.
        """
        fam = getattr(self, "family", None)
        for name, value, allowed in (("kind", kind, KINDS), ("new_groups", new_groups, NEW_GROUPS),
                                     ("output", output, OUTPUTS)):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {list(allowed)}, got {value!r}")
        if type is not None and (fam is None or type not in ("response", "link")):
            raise ValueError(f"type= is 'response' or 'link' for a GLMM, got {type!r}"
                             + ("" if fam is not None else " (a linear mixed model has no link)"))
        if type == "link" and kind == "response":
            raise ValueError("kind='response' draws responses; it has no link scale (drop type='link')")
        if not 0 < level < 1:
            raise ValueError(f"level must be between 0 and 1, got {level!r}")
        d = self.design
        if d.n_rows is not None:
            raise ValueError("this model was fitted from a lazy frame's cross-products: predict needs "
                             "row-level data; collect the frame and fit it eagerly")
        terms = resolve_re_form(d, re_form, include_re)
        terms = d.terms if terms is None else terms
        rng = np.random.default_rng(seed)
        beta = posterior_arrays(self.idata, "beta")
        S = beta.shape[0]
        if newdata is None:
            X, off = d.X, d.offset
            rows = [(t, d.term_columns(t), np.asarray(t.codes, dtype=np.int64), None) for t in terms]
        else:
            frame, _ = to_pandas(newdata)
            X, off = _new_fixed_matrix(d, frame), _new_offset(d, frame, offset)
            rows = [(t, *_term_rows(d, t, frame)) for t in terms]
        eta = beta @ X.T + off[None, :]
        b = posterior_b(d, self.layout, self.idata) if rows else None
        theta = posterior_arrays(self.idata, "theta") if new_groups == "sample" else None
        sd = _posterior_sd(self)
        for t, Xt, idx, keys in rows:
            B = b[:, t.z_start : t.z_start + t.q].reshape(S, t.m, t.k)
            seen = idx >= 0
            eta[:, seen] += np.einsum("rk,srk->sr", Xt[seen], B[:, idx[seen]])
            eta[:, idx == -2] = np.nan
            new = idx == -1
            if new_groups == "sample" and new.any():
                new_keys = [keys[i] for i in np.flatnonzero(new)]
                eta[:, new] += _new_group_effects(t, Xt[new], new_keys, theta, sd, rng)
        trials = None
        if kind == "response" and fam is not None and fam.name == "binomial":
            trials = _trials(self, None if newdata is None else frame)
        pred = self._transform(eta, kind, type, rng, trials)
        if output == "draws":
            return pred
        mean = pred.mean(axis=0)
        if output == "mean":
            return mean
        lo, hi = np.quantile(pred, [(1 - level) / 2, (1 + level) / 2], axis=0)
        return pd.DataFrame({"mean": mean, "sd": pred.std(axis=0, ddof=1), "lower": lo, "upper": hi})

    def _transform(self, eta: np.ndarray, kind: str, type, rng: np.random.Generator,
                   trials: np.ndarray | None = None) -> np.ndarray:
        fam = getattr(self, "family", None)
        if fam is None:
            if kind == "mean":
                return eta
            sigma = posterior_arrays(self.idata, "sigma").astype(float)
            return eta + sigma[:, None] * rng.standard_normal(eta.shape)
        if kind == "mean":
            return eta if type == "link" else fam.link.inverse(eta)
        mu = fam.link.inverse(eta)
        extra = (None if self._family_param is None
                 else posterior_arrays(self.idata, self._family_param).astype(float))
        out = np.full_like(mu, np.nan)
        ok = np.isfinite(mu[0])
        w = np.ones(int(ok.sum())) if trials is None else trials[ok]  # binomial: proportions of wᵢ
        for s in range(mu.shape[0]):
            if fam.name == "Gamma":
                out[s, ok] = fam.sample(mu[s, ok], w, rng, float(extra[s]) ** 2)
            else:
                f = fam.with_theta(float(extra[s])) if fam.name == "negative_binomial" else fam
                out[s, ok] = f.sample(mu[s, ok], w, rng)
        return out


def _trials(result, frame: pd.DataFrame | None) -> np.ndarray | None:
    """A binomial fit's trials per predicted row: the prior weights of the fitted rows, or s + f of
    the formula's ``cbind(s, f)`` evaluated on ``newdata`` (None: 0/1 responses, one trial)."""
    d = result.design
    if frame is None:
        return None if d.weights is None else np.asarray(d.weights, dtype=float)
    if d.weights is None or np.all(d.weights == 1):
        return None
    ff = result.spec.fixed_formula
    if ff is None or ff.cbind is None:
        raise ValueError(
            "kind='response' draws binomial proportions out of each row's trials, which this fit took "
            "from weights=; newdata cannot give them: use kind='mean', or refit with "
            "cbind(successes, failures) and give those columns in newdata")
    try:
        s = evaluate_expr(ff.cbind[0], frame, "newdata")
        f = evaluate_expr(ff.cbind[1], frame, "newdata")
    except (KeyError, ValueError, NameError) as err:
        raise ValueError(
            f"kind='response' draws binomial proportions out of each row's trials, "
            f"cbind({ff.cbind[0]}, {ff.cbind[1]}): newdata needs the columns for them ({err})") from None
    return np.asarray(s, dtype=float) + np.asarray(f, dtype=float)
