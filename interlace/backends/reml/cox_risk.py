"""Risk sets of the Cox partial likelihood by cumulative sums (Efron or Breslow ties, strata).

Rows are sorted once by stratum and decreasing time; rows of one stratum with equal times form
a *block*. The risk set of block B is every row of its stratum up to B's last row, so every
risk-set sum is a prefix sum over blocks. Block B with d events D_B contributes, for
k = 0 … d−1 (one "event pair" (B, k) per event), the denominator

    den_Bk = S0_B − c_k D0_B,   S0_B = Σ_{R(B)} wᵢ,  D0_B = Σ_{D_B} wᵢ,  wᵢ = exp(ηᵢ),

with c_k = k/d (Efron) or 0 (Breslow); log PL = Σ_events ηᵢ − Σ_(B,k) log den_Bk.
Row i enters pair (B, k) with weight e = 1, or 1 − c_k when i is one of B's events. With
R the n × E matrix R_{i,Bk} = wᵢ e_{i,Bk} / den_Bk (i in R(B)), the derivatives in η are

    ∂ log PL / ∂η = δ − w∘a,        −∂² log PL / ∂η∂η' = diag(w∘a) − R R',

aᵢ = Σ_(B,k) e_{i,Bk}/den_Bk (the cumulative hazard of row i). For a column y,
R'y = (S1_B − c_k D1_B)/den_Bk with S1, D1 the risk-set and event sums of w∘y, and the sum over
k collapses to block scalars, so that

    (RR'y)ᵢ = wᵢ (Σ_{B ≥ Bᵢ} (g2_B S1_B − g1_B D1_B) − δᵢ (g1_Bᵢ S1_Bᵢ − gc_Bᵢ D1_Bᵢ)),

g2 = Σ_k 1/den², g1 = Σ_k c_k/den², gc = Σ_k c_k²/den² (B ≥ Bᵢ: the blocks of the stratum at
or after Bᵢ, i.e. with times ≤ tᵢ). Every information product therefore costs a few prefix
sums over blocks per column: no n × n, per-event or n × q dense work (Therneau & Grambsch 2000,
ch. 3 and 9, for the Efron derivatives).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["RiskSets", "RiskState", "GroupKernel"]


@dataclass
class RiskState:
    """Everything at one η that the derivatives reuse (rows in sorted order)."""

    w: np.ndarray
    den: np.ndarray  # per event pair
    loglik: float
    a: np.ndarray  # per row: Σ e/den over the pairs whose risk set holds the row
    resid: np.ndarray  # δ − w∘a (martingale residuals), the gradient in η
    g2: np.ndarray  # per block: Σ_k 1/den², Σ_k c_k/den², Σ_k c_k²/den²
    g1: np.ndarray
    gc: np.ndarray


class RiskSets:
    """Sorted rows, tied blocks and event pairs of one data set; evaluates log PL and its parts.

    ``order`` maps sorted positions to input rows: callers permute their rows once with it and
    pass η and columns in sorted order.
    """

    def __init__(self, time: np.ndarray, status: np.ndarray, strata: np.ndarray | None = None,
                 ties: str = "efron"):
        time = np.asarray(time, dtype=float)
        n = time.size
        st = np.zeros(n, dtype=np.int64) if strata is None else np.asarray(strata, dtype=np.int64)
        self.order = np.lexsort((-time, st))
        t, s = time[self.order], st[self.order]
        self.status = np.asarray(status, dtype=float)[self.order]
        self.n = n
        new = np.r_[True, (s[1:] != s[:-1]) | (t[1:] != t[:-1])]
        self.block = np.cumsum(new) - 1  # block of each sorted row
        self.bstart = np.flatnonzero(new)
        nb = self.n_blocks = self.bstart.size
        bs = s[self.bstart]
        first = np.r_[True, bs[1:] != bs[:-1]]
        first_block = np.flatnonzero(first)
        sid = np.cumsum(first) - 1
        self.bfirst = first_block[sid]  # first block of each block's stratum
        self.bnext = np.r_[first_block[1:], nb][sid]  # first block of the next stratum
        self._later = np.flatnonzero(self.bfirst > 0)
        self._before = self.bfirst[self._later] - 1
        self.stratum_of_row = sid[self.block]
        d = np.add.reduceat(self.status, self.bstart).astype(np.int64)
        self.pend = np.cumsum(d)
        self.pstart = self.pend - d
        self.pblock = np.repeat(np.arange(nb), d)
        k = np.arange(self.pblock.size) - self.pstart[self.pblock]
        self.c = k / d[self.pblock] if ties == "efron" else np.zeros(self.pblock.size)
        self.has_events = d > 0
        self.n_events = int(d.sum())
        self.event_rows = np.flatnonzero(self.status)

    # ---- block-level helpers ----------------------------------------------------------------
    def block_sums(self, v: np.ndarray) -> np.ndarray:
        """Σ over the rows of each block (axis 0)."""
        return np.add.reduceat(v, self.bstart, axis=0)

    def risk_sums(self, per_block: np.ndarray) -> np.ndarray:
        """Σ over the blocks of the stratum up to each block (its risk set)."""
        C = np.cumsum(per_block, axis=0)
        if self._later.size:  # blocks of later strata: minus the sum up to their stratum's start
            C[self._later] -= C[self._before]  # (the right side is a copy, taken first)
        return C

    def suffix(self, per_block: np.ndarray) -> np.ndarray:
        """Σ over the blocks at or after each block within its stratum (times ≤ the block's)."""
        rc = np.concatenate([np.cumsum(per_block[::-1], axis=0)[::-1],
                             np.zeros((1,) + per_block.shape[1:])])
        return rc[:-1] - rc[self.bnext]

    def _pairs_to_blocks(self, v: np.ndarray) -> np.ndarray:
        """Σ over each block's event pairs (axis 0); zero for blocks without events."""
        out = np.zeros((self.n_blocks,) + v.shape[1:])
        if v.shape[0]:
            out[self.has_events] = np.add.reduceat(v, self.pstart[self.has_events], axis=0)
        return out

    # ---- evaluation -------------------------------------------------------------------------
    def _den(self, eta: np.ndarray):
        shift = float(eta.max())
        w = np.exp(eta - shift)
        S0 = self.risk_sums(self.block_sums(w))
        D0 = self.block_sums(w * self.status)
        return w, shift, S0[self.pblock] - self.c * D0[self.pblock]

    def loglik(self, eta: np.ndarray) -> float:
        """log PL at η (sorted order)."""
        _w, shift, den = self._den(eta)
        return float(eta[self.event_rows].sum() - np.log(den).sum() - self.n_events * shift)

    def state(self, eta: np.ndarray) -> RiskState:
        """log PL, hazard weights, residuals and the block scalars at η (sorted order)."""
        w, shift, den = self._den(eta)
        inv = 1.0 / den
        inv2 = inv * inv
        c = self.c
        per_pair = np.stack([inv, c * inv, inv2, c * inv2, c * c * inv2], axis=1)
        h, hc, g2, g1, gc = self._pairs_to_blocks(per_pair).T
        a = self.suffix(h)[self.block] - self.status * hc[self.block]
        ll = float(eta[self.event_rows].sum() - np.log(den).sum() - self.n_events * shift)
        return RiskState(w=w, den=den, loglik=ll, a=a, resid=self.status - w * a, g2=g2, g1=g1, gc=gc)

    def rr_blocks(self, st: RiskState, Bs: np.ndarray, Be: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(A, C) with (RR'y)ᵢ = wᵢ (A[Bᵢ] − δᵢ C[Bᵢ]), from the block sums Bs of w∘y and Be of
        w∘δ∘y (vectors or nb × c matrices)."""
        S1 = self.risk_sums(Bs)
        if Bs.ndim == 1:
            return self.suffix(st.g2 * S1 - st.g1 * Be), st.g1 * S1 - st.gc * Be
        return (self.suffix(st.g2[:, None] * S1 - st.g1[:, None] * Be),
                st.g1[:, None] * S1 - st.gc[:, None] * Be)

    def rr(self, st: RiskState, y: np.ndarray) -> np.ndarray:
        """R R' y for one column y (sorted rows)."""
        wy = st.w * y
        A, C = self.rr_blocks(st, self.block_sums(wy), self.block_sums(wy * self.status))
        return st.w * (A[self.block] - self.status * C[self.block])

    def null_loglik(self, offset: np.ndarray | None = None) -> float:
        return self.loglik(np.zeros(self.n) if offset is None else offset)


class GroupKernel:
    """diag(Z_S' R R' Z_S) for coefficients that each row touches at most once (one grouping
    factor's intercepts), in O(n). Within a (level, stratum) the rows are in time order and,
    with G_B = Σ_{B' ≥ B} g2_B', γ2 = gc − 2 g1,

        Σ_{i,j∈s} uᵢuⱼ(RR')ᵢⱼ/(wᵢwⱼ) = Σⱼ uⱼ G_Bⱼ (2Uⱼ − uⱼ) − 2 Σ_{j event} uⱼ g1_Bⱼ (U⁺ⱼ − E_sBⱼ)
                                       + Σ_(s,B) γ2_B E_sB²,

    u = w z, Uⱼ the running sum of u to row j, U⁺ⱼ to the end of j's block, E_sB the events' u:
    (RR')ᵢⱼ = wᵢwⱼ Σ e e/den² over the pairs of the later of the two rows' blocks onwards.
    """

    def __init__(self, rs: RiskSets, codes: np.ndarray, m: int):
        """``codes``: level per sorted row (−1 for rows outside every level); ``m`` levels."""
        self.rs, self.m = rs, m
        rows = np.flatnonzero(codes >= 0)
        key = codes[rows] * (int(rs.stratum_of_row.max()) + 1) + rs.stratum_of_row[rows]
        srt = np.argsort(key, kind="stable")
        self.rows, key = rows[srt], key[srt]  # by (level, stratum), then time
        self.level = codes[self.rows]
        seg_start = np.r_[True, key[1:] != key[:-1]]
        self.seg_idx = np.maximum.accumulate(np.where(seg_start, np.arange(key.size), 0))
        self.blk = rs.block[self.rows]
        run_new = seg_start | np.r_[True, self.blk[1:] != self.blk[:-1]]
        self.run = np.cumsum(run_new) - 1
        self.run_start = np.flatnonzero(run_new)
        self.run_last = np.r_[self.run_start[1:], self.rows.size] - 1
        self.run_level = self.level[self.run_start]
        self.run_block = self.blk[self.run_start]
        self.event = rs.status[self.rows]

    def diag(self, st: RiskState, z: np.ndarray, G: np.ndarray) -> np.ndarray:
        """Σ_pairs (R'z_s)² for every level s; ``z`` each sorted row's entry, G = suffix(g2)."""
        u = st.w[self.rows] * z[self.rows]
        cu = np.cumsum(u)
        U = cu - np.r_[0.0, cu][self.seg_idx]
        U_end = U[self.run_last][self.run]
        E = np.bincount(self.run, weights=u * self.event, minlength=self.run_start.size)
        part = u * G[self.blk] * (2 * U - u) - 2 * self.event * u * st.g1[self.blk] * (U_end - E[self.run])
        g2 = st.gc - 2 * st.g1
        out = np.bincount(self.level, weights=part, minlength=self.m)
        out += np.bincount(self.run_level, weights=g2[self.run_block] * E**2, minlength=self.m)
        return out
