"""The PyMC backend's contract: reproducible draws (one seed per chain, whatever cores), the
sampler and its version recorded, nothing printed with progressbar=False, no likelihood-based
statistics on a posterior, ELPD-LOO anova, and the group-level log-likelihood for LOGO."""

from __future__ import annotations

import sys
import types
import warnings

import numpy as np
import pytest
from dense_reference import group_lambda

pytest.importorskip("pymc")

import interlace  # noqa: E402
from interlace import datasets  # noqa: E402
from interlace.backends.pymc.logo import group_loglik  # noqa: E402
from interlace.backends.pymc.model import marginal_density  # noqa: E402
from interlace.backends.pymc.progress import SamplingProgress  # noqa: E402
from interlace.backends.pymc.sampling import spawn_seeds  # noqa: E402

SLEEP = "Reaction ~ Days"
SLOPES = ["(Days | Subject)"]
SMALL = {"chains": 2, "draws": 150, "tune": 150}


@pytest.fixture(scope="module")
def sleep():
    return datasets.load("sleepstudy")


def _fit(data, formula=SLEEP, random=SLOPES, **kw):
    opts = {**SMALL, "random_seed": 7, "progressbar": False, **kw}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return interlace.fit(formula, data=data, random=random, backend="pymc", **opts)


def _draws(r) -> dict[str, np.ndarray]:
    post = r.idata.posterior
    return {k: post[k].to_numpy() for k in ("beta", "sigma", "theta", "b_Subject")}


# ---- reproducibility ----------------------------------------------------------------------------
def test_seeds_are_spawned_per_chain_from_one_seed_sequence():
    a, b = spawn_seeds(5, 3), spawn_seeds(5, 3)
    assert a.chains == b.chains and len(set(a.chains)) == 3 and a.entropy == 5
    assert spawn_seeds(5, 4).chains[:3] == a.chains  # chain c's seed does not depend on the chain count
    assert spawn_seeds(6, 3).chains != a.chains
    assert a.after.standard_normal() == b.after.standard_normal()
    assert spawn_seeds(None, 2).entropy != spawn_seeds(None, 2).entropy


@pytest.mark.slow
@pytest.mark.parametrize("sampler", ["nutpie", "pymc"])
def test_same_seed_same_draws_whatever_cores(sleep, sampler):
    one = _fit(sleep, sampler=sampler, cores=1)
    two = _fit(sleep, sampler=sampler, cores=2)
    other = _fit(sleep, sampler=sampler, cores=2, random_seed=8)
    for k, v in _draws(one).items():
        np.testing.assert_array_equal(v, _draws(two)[k], err_msg=k)
    assert not np.array_equal(_draws(one)["sigma"], _draws(other)["sigma"])
    info = one.optimizer_info
    assert info["sampler"] == sampler and info["random_seed"] == 7
    name, version = info["sampler_version"].split()
    assert name == sampler and version == __import__(sampler).__version__
    assert info["cores"] == 1 and two.optimizer_info["cores"] == 2
    assert one.method == f"posterior (NUTS, {info['sampler_version']})"
    text = str(one.summary())
    assert info["sampler_version"] in text and "random_seed=7" in text


def test_marginal_model_samples_with_the_low_rank_mass_matrix(sleep, monkeypatch):
    """The integrated marginal model asks nutpie for its low-rank modified mass matrix and says
    so; a model sampled through the pytensor graph keeps the diagonal one."""
    nutpie = pytest.importorskip("nutpie")
    seen = []
    real = nutpie.sample

    def spy(*args, **kw):
        seen.append(kw["low_rank_modified_mass_matrix"])
        return real(*args, **kw)

    monkeypatch.setattr(nutpie, "sample", spy)
    direct = _fit(sleep, cores=1, draws=30, tune=30)
    assert seen == [True, True] and direct.optimizer_info["mass_matrix"] == "low-rank modified"
    seen.clear()
    graph = _fit(sleep, cores=1, draws=30, tune=30, marginalize=False)
    assert seen == [False, False] and graph.optimizer_info["mass_matrix"] == "diagonal"


@pytest.mark.slow
def test_glmm_draws_do_not_depend_on_cores():
    cbpp = datasets.load("cbpp")
    cbpp = cbpp.assign(p=cbpp["incidence"] / cbpp["size"])
    fits = []
    for cores in (1, 2):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            fits.append(interlace.glmer("p ~ period", cbpp, "binomial", groups="herd", weights="size",
                                        backend="pymc", cores=cores, random_seed=3, progressbar=False,
                                        chains=2, draws=100, tune=100))
    for k in ("beta", "theta", "b_herd"):
        a, b = (f.idata.posterior[k].to_numpy() for f in fits)
        np.testing.assert_array_equal(a, b, err_msg=k)
    assert fits[0].optimizer_info["log_density"] == "compiled"  # the GLMM's graph, compiled by pytensor
    assert fits[0].method.startswith("posterior (NUTS, nutpie ")


@pytest.mark.slow
def test_without_a_seed_the_drawn_entropy_repeats_the_run(sleep):
    free = _fit(sleep, random_seed=None, cores=2)
    entropy = free.optimizer_info["seed_entropy"]
    again = _fit(sleep, random_seed=entropy, cores=1)
    np.testing.assert_array_equal(_draws(free)["b_Subject"], _draws(again)["b_Subject"])
    assert f"random_seed={entropy}" in str(free.summary())


# ---- nothing printed / a progress display ---------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("sampler", ["nutpie", "pymc"])
def test_progressbar_false_prints_nothing(sleep, sampler, capfd):
    capfd.readouterr()
    _fit(sleep, sampler=sampler, cores=2, draws=60, tune=60)
    out = capfd.readouterr()
    assert out.out == "" and out.err == ""


@pytest.mark.slow
def test_progressbar_shows_iterations_on_stderr(sleep, capfd):
    capfd.readouterr()
    _fit(sleep, progressbar=True, cores=2, draws=60, tune=60)
    err = capfd.readouterr().err
    assert "Sampling 2 chains" in err and "240/240 iterations" in err


def test_progress_in_a_notebook_updates_one_display(monkeypatch):
    shown = []

    class ZMQInteractiveShell:  # what Jupyter's kernel runs
        pass

    class Handle:
        def update(self, obj):
            shown.append(obj.data)

    display_mod = types.SimpleNamespace(
        HTML=lambda text: types.SimpleNamespace(data=text),
        display=lambda obj, display_id=None: shown.append(obj.data) or Handle(),
    )
    ipy = types.SimpleNamespace(get_ipython=lambda: ZMQInteractiveShell(), display=display_mod)
    monkeypatch.setitem(sys.modules, "IPython", ipy)
    monkeypatch.setitem(sys.modules, "IPython.display", display_mod)
    bar = SamplingProgress(2, 50, enabled=True)
    bar.update([25, 25], final=True)
    bar.close()
    assert "<progress value='0' max='100'" in shown[0]
    assert "<progress value='50' max='100'" in shown[1] and "50/100 iterations" in shown[1]
    assert len(shown) == 2  # close() does not redraw a final count already shown
    silent = SamplingProgress(2, 50, enabled=False)
    silent.update([50, 50], final=True)
    silent.close()
    assert len(shown) == 2


def test_progress_line_outside_a_terminal_shows_each_count_once(capsys):
    bar = SamplingProgress(1, 10, enabled=True)
    bar.update([4], final=True)
    bar.update([10], final=True)
    bar.close()
    err = capsys.readouterr().err
    assert err.count("10/10 iterations") == 1 and err.count("4/10 iterations") == 1 and err.endswith("\n")


@pytest.mark.slow
def test_progress_bar_in_a_real_jupyter_kernel():
    """A notebook run by a real IPython kernel (nbclient): one HTML progress display, updated in
    place to the final count; with progressbar=False the cell has no output at all."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    fit = ("import warnings; warnings.simplefilter('ignore')\n"
           "import interlace\nfrom interlace import datasets\n"
           "df = datasets.load('sleepstudy')\n"
           "r = interlace.fit('Reaction ~ Days', data=df, random=['(1 | Subject)'], backend='pymc',\n"
           "                  chains=2, draws=40, tune=40, cores=1, random_seed=1, progressbar={})")
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(fit.format("True")), nbformat.v4.new_code_cell(fit.format("False"))]
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3").execute()
    shown, quiet = nb.cells[0].outputs, nb.cells[1].outputs
    html = [o["data"]["text/html"] for o in shown if o.get("output_type") == "display_data"]
    assert len(html) == 1, shown  # one display, updated in place (not one output per redraw)
    assert "<progress value='160' max='160'" in html[0] and "160/160 iterations" in html[0]
    assert not any(o.get("output_type") == "stream" for o in shown)  # no text bar besides it
    assert quiet == []


# ---- no likelihood statistics on a posterior; ELPD comparison ---------------------------------
@pytest.fixture(scope="module")
def pair(sleep):
    return _fit(sleep, formula="Reaction ~ 1"), _fit(sleep)


@pytest.mark.slow
def test_a_posterior_has_no_llf_aic_bic_deviance(pair):
    _, b1 = pair
    for name in ("llf", "aic", "bic", "deviance"):
        with pytest.raises(AttributeError, match="loo"):
            getattr(b1, name)
        assert not hasattr(b1, name)
    from interlace.cli import result_dict

    summary = result_dict(b1)  # the CLI's JSON: no likelihood statistics for a posterior
    assert summary["logLik"] is None and summary["AIC"] is None and summary["method"] == b1.method
    lmm = marginal_density(b1.design)
    sd = np.sqrt(b1.scale)
    assert b1.plugin_llf == pytest.approx(lmm.logp(b1.theta, sd, b1.fe_params.to_numpy()), rel=1e-12)


@pytest.mark.slow
def test_anova_on_posteriors_is_an_elpd_loo_comparison(pair, sleep):
    import arviz as az

    b0, b1 = pair
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # Pareto-k notes on 150-draw chains
        table = interlace.anova(b0, b1, names=["null", "days"])
        loo1 = az.loo(b1.idata, var_name="Reaction")
        logo = interlace.loo_compare(null=b0, days=b1, group="Subject")
        logo1 = az.loo(b1.idata, var_name="marginal_Subject")
    assert set(table.index) == {"null", "days"}
    assert {"elpd_loo", "p_loo", "elpd_diff", "dse", "weight"} <= set(table.columns)
    assert table.loc["days", "elpd_loo"] == pytest.approx(loo1.elpd_loo)
    assert table["elpd_diff"].min() == 0.0
    assert logo.loc["days", "elpd_loo"] == pytest.approx(logo1.elpd_loo)
    assert logo1.n_data_points == 18  # one term per subject: leave-one-subject-out
    reml = interlace.fit(SLEEP, data=sleep, random=SLOPES)
    with pytest.raises(TypeError, match="cannot mix posteriors"):
        interlace.anova(b1, reml)
    with pytest.raises(ValueError, match="no F or likelihood-ratio tests"):
        interlace.anova(b1)
    with pytest.raises(KeyError, match="no group-level log-likelihood for 'Days'"):
        b1.loo(group="Days")


# ---- the group-level log-likelihood against dense algebra ------------------------------------------
def _mvn(y, mean, V):
    L = np.linalg.cholesky(V)
    r = np.linalg.solve(L, y - mean)
    return -0.5 * (len(y) * np.log(2 * np.pi) + 2 * np.sum(np.log(np.diag(L))) + r @ r)


def _dense_group_loglik(d, group, beta, sigma, theta, b):
    """log N(y_j | Xβ + o + Z₋g b₋g, σ²(W_j⁻¹ + Z_gj Λ_g Λ_g' Z_gj')) per level, from full matrices."""
    Z = d.Z.toarray()
    cols, Lj = group_lambda(d, group, theta)
    w = np.ones(d.n) if d.weights is None else d.weights
    mean = d.X @ beta + d.offset + Z[:, ~cols] @ b[~cols]
    codes = next(t.codes for t in d.terms if t.group == group)
    out = []
    for j in range(codes.max() + 1):
        rows = codes == j
        Zj = Z[np.ix_(rows, cols)]
        V = sigma**2 * (np.diag(1 / w[rows]) + Zj @ Lj @ Lj.T @ Zj.T)
        out.append(_mvn(d.y[rows], mean[rows], V))
    return np.array(out)


def _designs():
    sleep = datasets.load("sleepstudy")
    w = np.random.default_rng(3).uniform(0.5, 2.0, len(sleep))
    return {
        "slopes-weighted": (interlace.fit(SLEEP, data=sleep, random=SLOPES, weights=w), ["Subject"]),
        "uncorrelated": (interlace.fit(SLEEP, data=sleep, random=["(Days || Subject)"]), ["Subject"]),
        "crossed": (
            interlace.fit("diameter ~ 1", data=datasets.load("penicillin"),
                          random=["(1 | plate)", "(1 | sample)"]),
            ["plate", "sample"],
        ),
    }


@pytest.mark.parametrize("name", ["slopes-weighted", "uncorrelated", "crossed"])
def test_group_loglik_matches_dense_marginal_densities(name):
    fit, groups = _designs()[name]
    d = fit.design
    rng = np.random.default_rng(11)
    S = 3
    beta = fit.fe_params.to_numpy() + rng.normal(0, 1, (S, d.p))
    sigma = np.sqrt(fit.scale) * rng.uniform(0.8, 1.2, S)
    theta = fit.theta * rng.uniform(0.7, 1.3, (S, d.n_theta))
    b = rng.normal(0, 1, (S, d.q))
    for g in groups:
        got = group_loglik(d, g, beta, sigma, theta, b)
        for s in range(S):
            want = _dense_group_loglik(d, g, beta[s], sigma[s], theta[s], b[s])
            np.testing.assert_allclose(got[s], want, rtol=1e-10, err_msg=f"{name} {g} draw {s}")
    if len(groups) == 1:  # one factor: the levels' terms add up to the marginal log p(y | β, θ, σ)
        lmm = marginal_density(d)
        for s in range(S):
            assert got[s].sum() == pytest.approx(lmm.logp(theta[s], sigma[s], beta[s]), rel=1e-12)


# ---- every argument honoured or refused, both ways -------------------------------------------------
REML_ONLY = [
    {"method": "ML"},
    {"df_method": "kenward-roger"},
    {"optimizer": "bobyqa"},
    {"theta0": [1.0, 0.0, 1.0]},
    {"verbose": True},
]
SAMPLER_ONLY = [
    {"draws": 10}, {"tune": 10}, {"chains": 2}, {"cores": 1}, {"random_seed": 1}, {"sampler": "pymc"},
    {"priors": {"sigma": interlace.Prior("HalfNormal", sigma=10)}}, {"marginalize": False},
    {"target_accept": 0.9}, {"progressbar": False},
]


@pytest.mark.parametrize("kw", REML_ONLY, ids=lambda k: next(iter(k)))
def test_reml_arguments_are_refused_with_pymc(sleep, kw):
    with pytest.raises(ValueError, match=f"{next(iter(kw))}=.* has no meaning for backend='pymc'"):
        interlace.fit(SLEEP, data=sleep, random=SLOPES, backend="pymc", **kw)


@pytest.mark.parametrize("kw", SAMPLER_ONLY, ids=lambda k: next(iter(k)))
def test_sampler_arguments_are_refused_with_reml(sleep, kw):
    with pytest.raises(ValueError, match=f"{next(iter(kw))}=.* has no meaning for backend='reml'"):
        interlace.fit(SLEEP, data=sleep, random=SLOPES, **kw)


@pytest.mark.parametrize(
    "kw", [{"nAGQ": 2}, {"fast": True}, {"optimizer": "bobyqa"}], ids=lambda k: next(iter(k))
)
def test_glmer_refuses_laplace_arguments_with_pymc(kw):
    cbpp = datasets.load("cbpp")
    with pytest.raises(ValueError, match="backend"):
        interlace.glmer("p ~ period", cbpp.assign(p=cbpp["incidence"] / cbpp["size"]), "binomial",
                        groups="herd", weights="size", backend="pymc", **kw)


# ---- the dense evaluator for a few hundred random effects ------------------------------------------
@pytest.mark.parametrize("name", ["crossed", "nested", "crossed-slopes"])
def test_dense_marginal_matches_the_blocked_evaluator(name):
    from interlace.backends.pymc.dense import DenseMarginalLMM
    from interlace.backends.pymc.marginal import GaussianPrior, MarginalLMM

    rng = np.random.default_rng(4)
    if name == "crossed":
        pen = datasets.load("penicillin")
        fit = interlace.fit("diameter ~ 1", data=pen, random=["(1 | plate)", "(1 | sample)"])
    elif name == "nested":
        fit = interlace.fit("strength ~ 1", data=datasets.load("pastes"), random=["(1 | batch/cask)"])
    else:
        n_s, n_i = 12, 8
        subj, item = np.repeat(np.arange(n_s), n_i), np.tile(np.arange(n_i), n_s)
        x = np.where((subj + item) % 2 == 0, -0.5, 0.5)
        y = 1 + 0.3 * x + rng.normal(0, 0.7, n_s)[subj] + rng.normal(0, 0.4, n_s)[subj] * x
        y = y + rng.normal(0, 0.5, n_i)[item] + rng.normal(0, 1, subj.size)
        df = {"y": y, "x": x, "s": subj.astype(str), "i": item.astype(str)}
        fit = interlace.fit("y ~ x", data=__import__("pandas").DataFrame(df), random=["(x | s)", "(x | i)"],
                            weights=rng.uniform(0.5, 2, subj.size))
    d = fit.design
    blocked, dense = MarginalLMM(d), DenseMarginalLMM(d)
    assert DenseMarginalLMM.applies(d) and marginal_density(d).__class__ is DenseMarginalLMM
    theta = fit.theta + rng.uniform(0.05, 0.3, d.n_theta)
    beta = fit.fe_params.to_numpy() + 0.2
    a, b = blocked.logp_and_grad(theta, 1.3, beta), dense.logp_and_grad(theta, 1.3, beta)
    assert a.logp == pytest.approx(b.logp, rel=1e-12)
    np.testing.assert_allclose(b.g_theta, a.g_theta, rtol=1e-8, atol=1e-9)
    np.testing.assert_allclose([b.g_sigma, *b.g_beta], [a.g_sigma, *a.g_beta], rtol=1e-8, atol=1e-9)
    prior = GaussianPrior.from_cov(np.zeros(d.p), 50.0 * np.eye(d.p))
    a, b = blocked.logp_integrated(theta, 1.3, prior), dense.logp_integrated(theta, 1.3, prior)
    assert a.logp == pytest.approx(b.logp, rel=1e-12)
    np.testing.assert_allclose(b.g_theta, a.g_theta, rtol=1e-8, atol=1e-9)
    np.testing.assert_allclose(dense.conditional_mean_b(theta, beta), blocked.conditional_mean_b(theta, beta),
                               rtol=1e-9, atol=1e-12)
    # a draw with σ → 0 is the conditional mean; with σ > 0 both draw from one distribution
    np.testing.assert_allclose(dense.draw_b(theta, 0.0, beta, rng), dense.conditional_mean_b(theta, beta),
                               atol=1e-12)


# ---- the direct log-density (nutpie without a pytensor graph) ---------------------------------------
@pytest.mark.parametrize(
    "random, priors",
    [
        (["(Days | Subject)"], None),
        (["(Days | Subject)"], {"eta": 2.5, "Subject:Days": interlace.Prior("HalfCauchy", beta=4.0)}),
        (["(Days || Subject)"], {"sigma": interlace.Prior("HalfCauchy", beta=30)}),
        (["(1 | Subject)"], {"Subject": interlace.Prior("Exponential", lam=0.1)}),
        (["(Days + I(Days**2) | Subject)"], {"eta": 1.5}),  # three partial correlations
    ],
)
def test_direct_log_density_equals_pymcs_up_to_a_constant(sleep, random, priors):
    from interlace.backends.pymc.direct import direct_model
    from interlace.backends.pymc.model import build_model
    from interlace.backends.pymc.priors import resolve_priors

    if priors and "Subject:Days" in priors:  # one family per correlated term: both SDs HalfCauchy
        priors = {**priors, "Subject:(Intercept)": interlace.Prior("HalfCauchy", beta=40.0)}
    design = interlace.fit(SLEEP, data=sleep, random=random).design
    prior_set = resolve_priors(design, priors)
    model, layout = build_model(design, prior_set, True)
    flat = direct_model(model, design, layout, prior_set)
    assert flat is not None and flat.expand is not None  # the compiled passes, and numpy for the draws
    logp = model.compile_logp()
    shapes = {k: v.shape for k, v in model.initial_point().items()}

    def pymc_point(y):  # the sampler's coordinates → PyMC's value variables (log / packed log-diag L)
        stored = dict(zip(flat.names, flat.expand(y)[2:], strict=True))
        point = {}
        for rv in model.free_RVs:
            v = np.array(stored[rv.name], dtype=float).reshape(-1)
            if rv.name.startswith("chol_"):
                k = int(round((np.sqrt(8 * v.size + 1) - 1) / 2))
                diag = np.cumsum(np.arange(1, k + 1)) - 1
                v[diag] = np.log(v[diag])
            else:
                v = np.log(v)
            point[model.rvs_to_values[rv].name] = v.reshape(shapes[model.rvs_to_values[rv].name])
        return point

    def flat_pymc(y):
        return np.concatenate([pymc_point(y)[v.name].ravel() for v in model.value_vars])

    rng = np.random.default_rng(2)
    offsets = []
    h = 1e-5
    for _ in range(4):
        x = flat.start + rng.normal(0, 0.5, flat.ndim)
        eye = np.eye(flat.ndim)
        # density in the sampler's coordinates = PyMC's × |∂(PyMC's coordinates)/∂x|
        J = np.column_stack([(flat_pymc(x + h * e) - flat_pymc(x - h * e)) / (2 * h) for e in eye])
        out, full = flat.fn(x), flat.expand(x)
        offsets.append(out[0] - np.linalg.slogdet(J)[1] - logp(pymc_point(x)))
        numeric = [(flat.fn(x + h * e)[0] - flat.fn(x - h * e)[0]) / (2 * h) for e in eye]
        np.testing.assert_allclose(out[1], numeric, rtol=1e-5, atol=1e-5)
        assert full[0] == pytest.approx(out[0], rel=1e-12)
        np.testing.assert_allclose(full[1], out[1], rtol=1e-10, atol=1e-10)
        stored = dict(zip(flat.names, full[2:], strict=True))
        assert stored["sigma"] == pytest.approx(np.exp(x[0]))
    assert np.ptp(offsets) < 1e-6  # the same density up to the normalising constants
    # a prior outside the written-out families keeps the compiled graph
    other = resolve_priors(design, {"sigma": interlace.Prior("LogNormal", mu=3, sigma=1)})
    m2, l2 = build_model(design, other, True)
    assert direct_model(m2, design, l2, other) is None


def test_direct_model_keeps_the_python_density_if_the_compiled_passes_disagree(sleep, monkeypatch):
    from interlace.backends.pymc import direct
    from interlace.backends.pymc.model import build_model
    from interlace.backends.pymc.priors import resolve_priors

    design = interlace.fit(SLEEP, data=sleep, random=["(Days | Subject)"]).design
    prior_set = resolve_priors(design, None)
    model, layout = build_model(design, prior_set, True)
    flat = direct.direct_model(model, design, layout, prior_set)
    assert isinstance(flat.fn, direct._FastFn)  # agreeing at the start point: the compiled passes
    passes = direct._prior_pass

    def off_by_one(*args):
        logp, sigma = passes(*args)
        return logp + 1.0, sigma

    monkeypatch.setattr(direct, "_prior_pass", off_by_one)
    flat = direct.direct_model(model, design, layout, prior_set)
    assert isinstance(flat.fn, direct._Fn) and flat.expand is None
