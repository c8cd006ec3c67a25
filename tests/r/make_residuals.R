# residuals(m, type = ...) of lme4 fits, for tests/test_residuals.py.
# Usage: Rscript tests/r/make_residuals.R OUTDIR   (writes OUTDIR/residuals.json; OUTDIR = tests/data/extra)
suppressPackageStartupMessages({ library(lme4); library(jsonlite) })
out <- commandArgs(TRUE)[1]
ctrl <- glmerControl(optimizer = "bobyqa", optCtrl = list(rhoend = 1e-10), tolPwrss = 1e-12)
types <- function(m, ts) c(list(default = unname(residuals(m))),
                           setNames(lapply(ts, function(t) unname(residuals(m, type = t))), ts))
b <- glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), cbpp, binomial, control = ctrl)
p <- glmer(incidence ~ period + offset(log(size)) + (1 | herd), cbpp, poisson, control = ctrl)
ss <- read.csv("interlace/datasets/sleepstudy.csv", colClasses = c(Subject = "factor"))
ss$w <- seq(0.5, 2, length.out = nrow(ss))
l <- lmer(Reaction ~ Days + (Days | Subject), ss, weights = w)
glm_t <- c("deviance", "pearson", "response", "working")
res <- list(
  binomial = c(list(fixef = unname(fixef(b))), types(b, glm_t)),
  poisson = c(list(fixef = unname(fixef(p))), types(p, glm_t)),
  lmm_weighted = c(list(fixef = unname(fixef(l)), sigma = sigma(l)), types(l, c("response", "pearson")),
                   list(pearson_scaled = unname(residuals(l, type = "pearson", scaled = TRUE)))))
writeLines(toJSON(res, digits = NA, auto_unbox = TRUE), file.path(out, "residuals.json"))
