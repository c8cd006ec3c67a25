# Reference predictions of coxme fits (predict(fit, type = "lp" / "risk")) at tight control, for
# interlace's SurvivalResult.predict: the stratified rats model and two crossed terms on the
# eortc-like data of make_coxme_cases.R. Also the linear predictor without random effects
# (X beta, from fixef) since coxme's predict always includes them.
# Needs survival, jsonlite and coxme (2.2-22, CRAN; not packaged by Debian).
# Usage: Rscript tests/r/make_coxme_predict.R OUTDIR   (OUTDIR = tests/data/extra)
suppressPackageStartupMessages({ library(survival); library(coxme); library(jsonlite) })
out <- commandArgs(TRUE)[1]
tight <- function(ntheta) coxme.control(eps = 1e-11, iter.max = 100, inner.iter = 100,
  optpar = list(method = "BFGS", control = list(reltol = 1e-10, ndeps = rep(1e-4, ntheta))))
cases <- list()
put <- function(name, data_file, formula, r_formula, fixed, d, ntheta) {
  m <- coxme(as.formula(r_formula), data = d, control = tight(ntheta))
  X <- model.matrix(as.formula(fixed), d)[, -1, drop = FALSE]  # the fixed effects' columns
  cases[[name]] <<- list(name = name, data = data_file, formula = formula, r_formula = r_formula,
                         lp = unname(predict(m, type = "lp")), risk = unname(predict(m, type = "risk")),
                         lp_fixed = unname(c(X %*% fixef(m))))
}
put("rats_strata_sex", "rats", "Surv(time, status) ~ rx + strata(sex) + (1 | litter)",
    "Surv(time, status) ~ rx + strata(sex) + (1 | litter)", "~ rx", survival::rats, 1)
d <- read.csv(file.path(out, "data", "eortc_like.csv"))
d$ct <- interaction(d$centre, d$trt)
put("eortc_two_terms", "eortc_like.csv", "Surv(time, status) ~ trt + (1 | centre) + (1 | centre:trt)",
    "Surv(time, status) ~ trt + (1 | centre) + (1 | ct)", "~ trt", d, 2)
meta <- list(r = R.version.string, survival = as.character(packageVersion("survival")),
             coxme = as.character(packageVersion("coxme")))
writeLines(toJSON(list(meta = meta, cases = unname(cases)), auto_unbox = TRUE, digits = NA),
           file.path(out, "coxme_predict.json"))
