# performance::r2_nakagawa and icc for binomial GLMMs (logit, probit), for tests/test_glmm.py.
# Usage: Rscript tests/r/make_glmm_r2.R OUTDIR   (writes OUTDIR/data/bern_r2.csv, OUTDIR/glmm_r2.json)
suppressPackageStartupMessages({ library(lme4); library(performance); library(jsonlite) })
out <- commandArgs(TRUE)[1]
set.seed(3); d <- data.frame(g = factor(rep(1:40, each = 20)), x = round(rnorm(800), 4))
d$y <- rbinom(800, 1, plogis(-0.3 + 0.7 * d$x + rnorm(40, 0, 0.8)[d$g]))
write.csv(d, file.path(out, "data", "bern_r2.csv"), row.names = FALSE)
one <- function(m) {
  r <- r2_nakagawa(m); i <- icc(m)
  list(marginal = r$R2_marginal[[1]], conditional = r$R2_conditional[[1]],
       adjusted = i$ICC_adjusted, unadjusted = i$ICC_unadjusted)
}
res <- list(
  cbpp_logit = one(glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), cbpp, binomial)),
  bern_logit = one(glmer(y ~ x + (1 | g), d, binomial)),
  bern_probit = one(glmer(y ~ x + (1 | g), d, binomial(link = "probit"))))
writeLines(toJSON(res, auto_unbox = TRUE, digits = NA, pretty = TRUE), file.path(out, "glmm_r2.json"))
