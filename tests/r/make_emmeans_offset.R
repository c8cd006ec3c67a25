# emmeans with offsets (offset() in the formula and offset=), for tests/test_emmeans_offset.py.
# Usage: Rscript tests/r/make_emmeans_offset.R OUTDIR   (writes OUTDIR/emmeans_offset.json; OUTDIR = tests/data/extra)
# emmeans keeps the model frame's offset as a covariate '.offset.' held at its mean.
suppressPackageStartupMessages({ library(lme4); library(emmeans); library(jsonlite) })
out <- commandArgs(TRUE)[1]
emm_options(opt.digits = FALSE)
ctrl <- glmerControl(optimizer = "bobyqa", optCtrl = list(rhoend = 1e-10), tolPwrss = 1e-12)
tab <- function(x) { d <- as.data.frame(x); for (k in names(d)) if (is.factor(d[[k]])) d[[k]] <- as.character(d[[k]]); d }
emm_all <- function(m, spec, glmm) {
  e <- emmeans(m, spec)
  r <- list(link = tab(summary(e)), pairs_link = tab(pairs(e)), offset = ref_grid(m)@grid$.offset.[1])
  if (glmm) r <- c(r, list(response = tab(summary(e, type = "response")),
                           pairs_response = tab(pairs(e, type = "response")),
                           regrid = tab(summary(regrid(e))), pairs_regrid = tab(pairs(regrid(e)))))
  r
}
wine <- read.csv("interlace/datasets/wine.csv", colClasses = c(judge = "factor", bottle = "factor"))
wine$off <- seq(0, 10, length.out = nrow(wine))
l1 <- lmer(response ~ temp + contact + (1 | judge), wine, offset = off, REML = TRUE)
l2 <- lmer(response ~ temp + contact + offset(log(off + 1)) + (1 | judge), wine, REML = TRUE)
cbpp$logsize <- log(cbpp$size)
p1 <- glmer(incidence ~ period + offset(log(size)) + (1 | herd), cbpp, poisson, control = ctrl)
p2 <- glmer(incidence ~ period + (1 | herd), cbpp, poisson, offset = logsize, control = ctrl)
res <- list(
  lmm_arg = c(list(fixef = unname(fixef(l1))), emm_all(l1, ~temp, FALSE)),
  lmm_formula = c(list(fixef = unname(fixef(l2))), emm_all(l2, ~temp, FALSE)),
  pois_formula = c(list(fixef = unname(fixef(p1))), emm_all(p1, ~period, TRUE)),
  pois_arg = c(list(fixef = unname(fixef(p2))), emm_all(p2, ~period, TRUE)))
writeLines(toJSON(res, digits = NA, auto_unbox = TRUE, pretty = TRUE), file.path(out, "emmeans_offset.json"))
