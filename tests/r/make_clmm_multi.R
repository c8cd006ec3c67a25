# Reference fits of ordinal::clmm with several random-intercept terms (crossed and nested), for
# tests/test_clmm_multi.py. Run from the repository root:  Rscript tests/r/make_clmm_multi.R
# Writes tests/data/clmm/{soup.csv, wine.csv, sim_probit.csv, clmm_multi.json}.
suppressMessages({library(ordinal); library(jsonlite)})
out_dir <- "tests/data/clmm"
dir.create(out_dir, showWarnings = FALSE, recursive = TRUE)

# tight outer (nlminb) and inner (Newton on the modes) tolerances: the converged optimum
tight <- clmm.control(method = "nlminb", gradTol = 1e-8, maxIter = 200,
                      rel.tol = 1e-14, x.tol = 1e-12, eval.max = 10000, iter.max = 5000)
# the SEs: clmm's numerical Hessian of the Laplace log-likelihood is noisy when the inner Newton
# loop is asked for 1e-8 (it stops at maxIter on round-off, with warnings): inner gradTol 1e-6
# (wine: the same SEs as the default 1e-4, to 8 digits), outer as tight
tight_se <- clmm.control(method = "nlminb", gradTol = 1e-6, maxIter = 200,
                         rel.tol = 1e-14, x.tol = 1e-12, eval.max = 10000, iter.max = 5000)

soup_d <- soup[, c("SURENESS", "PROD", "PRODID", "DAY", "RESP")]
write.csv(soup_d, file.path(out_dir, "soup.csv"), row.names = FALSE)
wine_d <- wine[, c("rating", "temp", "contact", "bottle", "judge")]
write.csv(wine_d, file.path(out_dir, "wine.csv"), row.names = FALSE)

# a crossed, unbalanced design: 60 subjects x 25 items, about 60% of the cells observed, some twice
set.seed(20261130)
cells <- expand.grid(subj = 1:60, item = 1:25)
cells <- cells[runif(nrow(cells)) < 0.6, ]
cells <- rbind(cells, cells[sample(nrow(cells), 200), ])
n <- nrow(cells)
b_s <- rnorm(60, sd = 0.7); b_i <- rnorm(25, sd = 0.4)
x <- rnorm(n); grp <- sample(c("a", "b", "c"), n, replace = TRUE, prob = c(0.5, 0.3, 0.2))
eta <- 0.6 * x + c(a = 0, b = 0.4, c = -0.3)[grp] + b_s[cells$subj] + b_i[cells$item]
lat <- eta + rnorm(n)
y <- cut(lat, c(-Inf, -1, 0, 0.8, 1.7, Inf), labels = FALSE)
sim <- data.frame(y = y, x = x, grp = grp, subj = paste0("s", cells$subj), item = paste0("i", cells$item))
write.csv(sim, file.path(out_dir, "sim_probit.csv"), row.names = FALSE)
sim$y <- factor(sim$y, ordered = TRUE)
sim$grp <- factor(sim$grp)

cases <- list(
  list(name = "soup_resp_day", data = "soup.csv", link = "logit",
       formula = "SURENESS ~ PROD + (1 | RESP) + (1 | RESP:DAY)", df = soup),
  list(name = "soup_resp_prodid", data = "soup.csv", link = "logit",
       formula = "SURENESS ~ DAY + (1 | RESP) + (1 | PRODID)", df = soup),
  list(name = "wine_judge_bottle", data = "wine.csv", link = "logit",
       formula = "rating ~ temp + contact + (1 | judge) + (1 | bottle)", df = wine),
  list(name = "sim_probit_crossed", data = "sim_probit.csv", link = "probit",
       formula = "y ~ x + grp + (1 | subj) + (1 | item)", df = sim)
)

res <- list()
for (cs in cases) {
  m <- suppressWarnings(clmm(as.formula(cs$formula), data = cs$df, link = cs$link, control = tight))
  vc <- VarCorr(m)
  m_se <- clmm(as.formula(cs$formula), data = cs$df, link = cs$link, control = tight_se)
  se <- sqrt(diag(vcov(m_se)))
  res[[cs$name]] <- list(
    formula = cs$formula, data = cs$data, link = cs$link, nobs = nobs(m),
    loglik = as.numeric(logLik(m)), aic = AIC(m),
    thresholds = as.list(m$alpha), beta = as.list(m$beta),
    se = as.list(se[c(names(m$alpha), names(m$beta))]),
    sd = lapply(vc, function(v) as.numeric(attr(v, "stddev"))),
    max_gradient = max(abs(m$gradient)),
    ranef = lapply(ranef(m), function(r) setNames(as.list(r[[1]]), rownames(r)))
  )
  # a variance estimated at the boundary (sd ~ 0) has no curvature: the SEs of (alpha, beta) are then
  # those of the model without that term (clmm's own vcov at sd = 0 exactly is not)
  at_zero <- names(vc)[sapply(vc, function(v) attr(v, "stddev")) < 1e-4]
  if (length(at_zero)) {
    keep <- Filter(function(t) !any(sapply(at_zero, function(g) grepl(paste0("| ", g, ")"), t, fixed = TRUE))),
                   strsplit(cs$formula, " \\+ ")[[1]])
    m0 <- clmm(as.formula(paste(keep, collapse = " + ")), data = cs$df, link = cs$link, control = tight_se)
    res[[cs$name]]$se_boundary <- as.list(sqrt(diag(vcov(m0)))[c(names(m0$alpha), names(m0$beta))])
    res[[cs$name]]$boundary_terms <- at_zero
  }
  cat(cs$name, "logLik", format(logLik(m), digits = 12), "max|grad|", max(abs(m$gradient)), "\n")
}
res$meta <- list(ordinal = as.character(packageVersion("ordinal")), R = R.version.string,
                 control = "nlminb rel.tol 1e-14, x.tol 1e-12, inner gradTol 1e-8 (SEs: 1e-6)")
writeLines(toJSON(res, auto_unbox = TRUE, digits = NA, pretty = TRUE), file.path(out_dir, "clmm_multi.json"))
