# Reference coxme fits for interlace.coxme beyond the shared rats case: stratified baseline
# hazards, several random terms (crossed spelling and coxme's nested a/b), a correlated random
# slope. Each case holds coxme's answer with its default control ("default") and with tight
# inner/outer tolerances ("tight", the converged optimum that the tests compare against).
# Needs survival, MASS, jsonlite and coxme (2.2-22, CRAN; not packaged by Debian).
# Usage: Rscript tests/r/make_coxme_cases.R OUTDIR   (OUTDIR = tests/data/extra)
suppressPackageStartupMessages({ library(survival); library(coxme); library(jsonlite) })
out <- commandArgs(TRUE)[1]
dir.create(file.path(out, "data"), recursive = TRUE, showWarnings = FALSE)

nv <- function(x) as.list(setNames(as.numeric(x), names(x)))
tight <- function(ntheta) coxme.control(eps = 1e-11, iter.max = 100, inner.iter = 100,
  optpar = list(method = "BFGS", control = list(reltol = 1e-10, ndeps = rep(1e-4, ntheta))))
varcorr <- function(m) lapply(coxme::VarCorr(m), function(v) {
  if (is.matrix(v)) list(variance = nv(diag(v)), correlation = v[lower.tri(v)])
  else list(variance = nv(v))
})
summ <- function(m) list(
  coef = nv(fixef(m)), se = nv(sqrt(diag(as.matrix(vcov(m))))), varcorr = varcorr(m),
  loglik_null = unname(m$loglik[1]), loglik_integrated = unname(m$loglik[2]),
  loglik_penalized = unname(m$loglik[3]), n = m$n[2], events = m$n[1])
cases <- list()
put <- function(name, data_file, formula, r_formula, d, ntheta, note = NULL) {
  f <- as.formula(r_formula)
  t0 <- proc.time()[[3]]
  m <- coxme(f, data = d)
  secs <- proc.time()[[3]] - t0
  mt <- coxme(f, data = d, control = tight(ntheta))
  cases[[name]] <<- c(list(name = name, data = data_file, formula = formula, r_formula = r_formula,
                           seconds = secs), if (is.null(note)) NULL else list(note = note),
                      list(default = summ(m), tight = summ(mt)))
}

# rats (survival; bundled with interlace as datasets "rats"): litters of three, one treated
put("rats_strata_sex", "rats", "Surv(time, status) ~ rx + strata(sex) + (1 | litter)",
    "Surv(time, status) ~ rx + strata(sex) + (1 | litter)", survival::rats, 1)

# lung (survival): status coded 1 = censored, 2 = dead, as R's Surv reads it; 18 institutions
lung <- survival::lung[, c("time", "status", "age", "ph.ecog", "sex", "inst")]
write.csv(lung, file.path(out, "data", "lung_coxme.csv"), row.names = FALSE, na = "")
put("lung_strata_sex", "lung_coxme.csv", "Surv(time, status) ~ age + ph.ecog + strata(sex) + (1 | inst)",
    "Surv(time, status) ~ age + ph.ecog + strata(sex) + (1 | inst)", lung, 1)

# eortc-like: 2,323 patients in 37 centres of unequal size, a treatment whose effect varies by
# centre, two strata factors, Weibull times in whole days (many ties), uniform censoring
set.seed(2323)
n <- 2323; nc <- 37
centre <- sample(nc, n, TRUE, prob = rgamma(nc, 3))
d <- data.frame(centre = sprintf("c%02d", centre), trt = rbinom(n, 1, 0.5),
                stage = sample(c("I", "II"), n, TRUE), sex = sample(c("f", "m"), n, TRUE))
B <- MASS::mvrnorm(nc, c(0, 0), matrix(c(0.25, -0.05, -0.05, 0.12), 2))
eta <- -0.4 * d$trt + 0.5 * (d$stage == "II") + B[centre, 1] + B[centre, 2] * d$trt
t <- (-log(runif(n)) / (3e-4 * exp(eta)))^(1 / 1.3)
cens <- runif(n, 50, 1500)
d$time <- pmax(1, round(pmin(t, cens))); d$status <- as.integer(t <= cens)
write.csv(d, file.path(out, "data", "eortc_like.csv"), row.names = FALSE)
d <- read.csv(file.path(out, "data", "eortc_like.csv"))
d$ct <- interaction(d$centre, d$trt)  # coxme takes a grouping column, not a:b
put("eortc_two_terms", "eortc_like.csv", "Surv(time, status) ~ trt + (1 | centre) + (1 | centre:trt)",
    "Surv(time, status) ~ trt + (1 | centre) + (1 | ct)", d, 2,
    "R's (1 | ct) with ct = interaction(centre, trt) is interlace's (1 | centre:trt)")
put("eortc_nested", "eortc_like.csv", "Surv(time, status) ~ trt + (1 | centre/trt)",
    "Surv(time, status) ~ trt + (1 | centre/trt)", d, 2,
    "coxme's sparse approximation applies to centre/trt (74 levels > 50; 59 of them hold <= 2 % of the rows)")
put("eortc_slope", "eortc_like.csv", "Surv(time, status) ~ trt + (1 + trt | centre)",
    "Surv(time, status) ~ trt + (1 + trt | centre)", d, 3)
put("eortc_strata2", "eortc_like.csv", "Surv(time, status) ~ trt + strata(stage, sex) + (1 | centre)",
    "Surv(time, status) ~ trt + strata(stage, sex) + (1 | centre)", d, 1)
put("eortc_one_term", "eortc_like.csv", "Surv(time, status) ~ trt + (1 | centre)",
    "Surv(time, status) ~ trt + (1 | centre)", d, 1)

meta <- list(r = R.version.string, survival = as.character(packageVersion("survival")),
             coxme = as.character(packageVersion("coxme")),
             tight_control = "coxme.control(eps=1e-11, iter.max=100, inner.iter=100, optpar BFGS reltol=1e-10, ndeps=1e-4)")
writeLines(toJSON(list(meta = meta, cases = unname(cases)), auto_unbox = TRUE, digits = NA, pretty = TRUE, na = "null"),
           file.path(out, "coxme_cases.json"))
