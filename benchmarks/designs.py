"""Seeded synthetic designs for the benchmark: each returns a DataFrame and the model.

- ``insteval``: InstEval-shaped ratings, 73,421 rows, 2,972 students × 1,128 lecturers × 28
  department:service cells, ``y ~ service + (1|s) + (1|d) + (1|dept:service)``. Students belong
  to study programmes whose curricula are mostly in one department (so, as in the real data,
  each student rates ~6 departments' lecturers and each student–lecturer pair occurs once);
  lecturer popularity is skewed.
- ``slopes``: psycholinguistic subject × item, fully crossed, a ±½ condition counterbalanced
  over items, ``y ~ x + (1 + x|subj) + (1 + x|item)``.
- ``crossed``: three crossed random intercepts with random (uniform) level assignment,
  ``y ~ x + (1|a) + (1|b) + (1|c)``; the 1,000,000-row design and the scaling series.
- ``crossed_bernoulli`` / ``crossed_slopes_bernoulli``: binary outcomes for the glmer benchmark
  (benchmarks/glmer.py): random subject × item assignment with two random intercepts, and a
  fully crossed subject × item design with correlated subject slopes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

__all__ = [
    "Design", "insteval_shaped", "subject_item_slopes", "three_crossed", "crossed_bernoulli",
    "crossed_slopes_bernoulli",
]

# relative department sizes (rows per department in lme4's InstEval)
DEPT_SHARE = np.array(
    [3292, 3790, 4708, 9528, 8097, 2520, 6725, 4426, 6624, 3934, 2632, 4749, 8574, 3822], dtype=float
)


@dataclass
class Design:
    """A benchmark case: data, the interlace call and the lme4 formula."""

    name: str
    data: pd.DataFrame
    formula: str
    random: list[str]
    r_formula: str
    factors: list[str]
    levels: str
    notes: str = ""
    extra: dict = field(default_factory=dict)


def _exact_rows(rng, s, d, n, nd, allowed):
    """Trim or top up (s, d) pairs to exactly n distinct rows, keeping every s and d level."""
    pairs = set(zip(s.tolist(), d.tolist(), strict=True))
    s_list, d_list = list(s), list(d)
    ns = len(allowed)
    # every lecturer rated at least once
    rated = np.zeros(nd, bool)
    rated[d] = True
    for j in np.flatnonzero(~rated):
        for i in rng.permutation(ns):
            if j in allowed[i] and (i, j) not in pairs:
                pairs.add((i, j))
                s_list.append(i)
                d_list.append(j)
                break
    while len(s_list) < n:
        i = int(rng.integers(ns))
        j = int(rng.choice(allowed[i]))
        if (i, j) not in pairs:
            pairs.add((i, j))
            s_list.append(i)
            d_list.append(j)
    s, d = np.array(s_list), np.array(d_list)
    if s.size > n:
        keep = np.ones(s.size, bool)
        cs, cd = np.bincount(s, minlength=ns), np.bincount(d, minlength=nd)
        for r in rng.permutation(s.size):
            if s.size - (~keep).sum() == n:
                break
            if cs[s[r]] > 1 and cd[d[r]] > 1:
                keep[r] = False
                cs[s[r]] -= 1
                cd[d[r]] -= 1
        s, d = s[keep], d[keep]
    return s, d


def insteval_shaped(seed: int = 1, n: int = 73421, ns: int = 2972, nd: int = 1128) -> Design:
    """InstEval's sizes and structure (see the module docstring), Gaussian response."""
    rng = np.random.default_rng(seed)
    share = DEPT_SHARE / DEPT_SHARE.sum()
    ndept = share.size
    dept_of_d = rng.choice(ndept, nd, p=share)
    dept_of_d[:ndept] = np.arange(ndept)
    by_dept = [np.flatnonzero(dept_of_d == k) for k in range(ndept)]
    popularity = rng.lognormal(0.0, 1.2, nd)
    per_dept, size, outside = 4, 90, 0.3
    prog_dept = np.repeat(np.arange(ndept), per_dept)
    curricula = []
    for g in range(prog_dept.size):
        home = by_dept[prog_dept[g]]
        n_out = int(size * outside)
        own = rng.choice(home, min(size - n_out, home.size), replace=False)
        others = np.setdiff1d(np.arange(nd), home)
        curricula.append(np.concatenate([own, rng.choice(others, n_out, replace=False)]))
    taught = np.zeros(nd, bool)
    for cur in curricula:
        taught[cur] = True
    for j in np.flatnonzero(~taught):  # every lecturer teaches in some programme of their department
        g = rng.choice(np.flatnonzero(prog_dept == dept_of_d[j]))
        curricula[g] = np.append(curricula[g], j)
    prog_of_s = rng.choice(prog_dept.size, ns, p=np.repeat(share, per_dept) / per_dept)
    allowed = [curricula[g] for g in prog_of_s]
    per_s = rng.negative_binomial(3, 3 / (3 + n / ns), ns) + 1
    per_s = np.maximum(1, np.round(per_s * n / per_s.sum())).astype(int)
    rows_s, rows_d = [], []
    for i in range(ns):
        cur = allowed[i]
        k = min(per_s[i], cur.size)
        rows_d.append(rng.choice(cur, k, replace=False, p=popularity[cur] / popularity[cur].sum()))
        rows_s.append(np.full(k, i))
    s, d = _exact_rows(rng, np.concatenate(rows_s), np.concatenate(rows_d), n, nd, allowed)
    service = (rng.random(s.size) < rng.beta(0.6, 0.8, nd)[d]).astype(int)
    dept = dept_of_d[d]
    b_s, b_d = rng.normal(0, 0.33, ns), rng.normal(0, 0.51, nd)
    b_ds = rng.normal(0, 0.11, 2 * ndept)
    y = 3.2 - 0.06 * service + b_s[s] + b_d[d] + b_ds[2 * dept + service] + rng.normal(0, 1.18, s.size)
    df = pd.DataFrame(
        {"y": y, "s": s.astype(str), "d": d.astype(str), "dept": dept.astype(str),
         "service": service.astype(str)}
    )
    levels = f"{df.s.nunique():,} × {df.d.nunique():,} × {(df.dept + ':' + df.service).nunique()}"
    return Design(
        "insteval", df, "y ~ service", ["(1 | s)", "(1 | d)", "(1 | dept:service)"],
        "y ~ service + (1 | s) + (1 | d) + (1 | dept:service)", ["s", "d", "dept", "service"], levels,
        "InstEval-shaped (synthetic)",
    )


def subject_item_slopes(seed: int = 2, n_subj: int = 500, n_item: int = 200) -> Design:
    """Every subject sees every item once; the ±½ condition alternates over items."""
    rng = np.random.default_rng(seed)
    subj = np.repeat(np.arange(n_subj), n_item)
    item = np.tile(np.arange(n_item), n_subj)
    x = np.where((subj + item) % 2 == 0, -0.5, 0.5)
    cs = [[0.50, 0.10], [0.10, 0.20]]
    ci = [[0.30, -0.05], [-0.05, 0.10]]
    bs = rng.multivariate_normal([0, 0], cs, n_subj)
    bi = rng.multivariate_normal([0, 0], ci, n_item)
    y = 1 + 0.3 * x + bs[subj, 0] + bs[subj, 1] * x + bi[item, 0] + bi[item, 1] * x
    y = y + rng.normal(0, 1, subj.size)
    df = pd.DataFrame({"y": y, "x": x, "subj": subj.astype(str), "item": item.astype(str)})
    return Design(
        "slopes", df, "y ~ x", ["(1 + x | subj)", "(1 + x | item)"],
        "y ~ x + (1 + x | subj) + (1 + x | item)", ["subj", "item"], f"{n_subj:,} × {n_item:,}",
        "subject × item, correlated slopes",
    )


def three_crossed(n: int, la: int, lb: int, lc: int, seed: int = 3, name: str | None = None) -> Design:
    """n rows, each assigned uniformly at random to one level of each of three factors."""
    rng = np.random.default_rng(seed)
    codes = []
    for m in (la, lb, lc):
        c = rng.integers(0, m, n)
        c[:m] = rng.permutation(m)  # every level present
        codes.append(c)
    a, b, c = codes
    x = rng.normal(size=n)
    y = 1 + 0.5 * x + rng.normal(0, 0.6, la)[a] + rng.normal(0, 0.4, lb)[b] + rng.normal(0, 0.3, lc)[c]
    y = y + rng.normal(0, 1, n)
    df = pd.DataFrame({"y": y, "x": x, "a": a.astype(str), "b": b.astype(str), "c": c.astype(str)})
    return Design(
        name or f"crossed_{n}", df, "y ~ x", ["(1 | a)", "(1 | b)", "(1 | c)"],
        "y ~ x + (1 | a) + (1 | b) + (1 | c)", ["a", "b", "c"], f"{la:,} × {lb:,} × {lc:,}",
        "three crossed factors",
    )


def crossed_bernoulli(n: int, n_subj: int, n_item: int, seed: int = 11, name: str | None = None) -> Design:
    """Binary outcomes, each row a random subject and a random item (every level present):
    ``y ~ x + (1|subj) + (1|item)`` with logit −0.4 + 0.7x + b_subj + b_item, SDs 0.9 and 0.6."""
    rng = np.random.default_rng(seed)
    s = rng.integers(0, n_subj, n)
    s[:n_subj] = rng.permutation(n_subj)
    i = rng.integers(0, n_item, n)
    i[:n_item] = rng.permutation(n_item)
    x = rng.normal(size=n)
    eta = -0.4 + 0.7 * x + rng.normal(0, 0.9, n_subj)[s] + rng.normal(0, 0.6, n_item)[i]
    y = (rng.random(n) < 1.0 / (1.0 + np.exp(-eta))).astype(int)
    df = pd.DataFrame({"y": y, "x": x, "subj": s.astype(str), "item": i.astype(str)})
    return Design(
        name or f"crossed_bern_{n}", df, "y ~ x", ["(1 | subj)", "(1 | item)"],
        "y ~ x + (1 | subj) + (1 | item)", ["subj", "item"], f"{n_subj:,} × {n_item:,}",
        "crossed Bernoulli", extra={"family": "binomial"},
    )


def crossed_slopes_bernoulli(n_subj: int = 100, n_item: int = 100, seed: int = 12) -> Design:
    """Every subject sees every item once, a ±½ condition alternating over items (counterbalanced
    over subjects): ``acc ~ cond + (1 + cond | subj) + (1 | item)``."""
    rng = np.random.default_rng(seed)
    subj = np.repeat(np.arange(n_subj), n_item)
    item = np.tile(np.arange(n_item), n_subj)
    cond = np.where((subj + item) % 2 == 0, -0.5, 0.5)
    bs = rng.multivariate_normal([0, 0], [[0.6, 0.1], [0.1, 0.25]], n_subj)
    eta = 1.0 + 0.4 * cond + bs[subj, 0] + bs[subj, 1] * cond + rng.normal(0, 0.5, n_item)[item]
    acc = (rng.random(subj.size) < 1.0 / (1.0 + np.exp(-eta))).astype(int)
    df = pd.DataFrame({"acc": acc, "cond": cond, "subj": subj.astype(str), "item": item.astype(str)})
    return Design(
        "crossed_slopes_10k", df, "acc ~ cond", ["(1 + cond | subj)", "(1 | item)"],
        "acc ~ cond + (1 + cond | subj) + (1 | item)", ["subj", "item"], f"{n_subj:,} × {n_item:,}",
        "crossed Bernoulli, correlated subject slopes", extra={"family": "binomial"},
    )
