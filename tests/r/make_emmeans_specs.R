# emmeans formula specs, contrast methods and adjustments, for tests/test_emmeans_specs.py.
# Usage: Rscript tests/r/make_emmeans_specs.R OUTDIR   (writes OUTDIR/emmeans_specs.json; OUTDIR = tests/data/extra)
suppressPackageStartupMessages({ library(lme4); library(lmerTest); library(emmeans); library(jsonlite) })
out <- commandArgs(TRUE)[1]
emm_options(opt.digits = FALSE)
ctrl <- glmerControl(optimizer = "bobyqa", optCtrl = list(rhoend = 1e-10), tolPwrss = 1e-12)
tab <- function(x) { d <- as.data.frame(x); for (k in names(d)) if (is.factor(d[[k]])) d[[k]] <- as.character(d[[k]]); d }
ss <- read.csv("interlace/datasets/sleepstudy.csv", colClasses = c(Subject = "factor"))
ss$phase <- factor(c("early", "mid", "late")[pmin(ss$Days %/% 4, 2) + 1], levels = c("early", "late", "mid"))
l <- lmer(Reaction ~ phase + (1 | Subject), ss)
g <- glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), cbpp, binomial, control = ctrl)
wine <- read.csv("interlace/datasets/wine.csv", colClasses = c(judge = "factor", bottle = "factor"))
w <- lmer(response ~ temp * contact + (1 | judge), wine)
methods <- function(m, spec) {
  e <- emmeans(m, spec)
  r <- list()
  for (meth in c("pairwise", "revpairwise", "trt.vs.ctrl"))
    for (adj in c("default", "sidak", "bonferroni", "none", "holm", "dunnettx"))
      r[[paste(meth, adj, sep = ":")]] <- tab(if (adj == "default") contrast(e, meth) else contrast(e, meth, adjust = adj))
  r
}
pw <- emmeans(l, pairwise ~ phase)
by <- emmeans(w, pairwise ~ temp | contact)
res <- list(
  lmm = c(list(emmeans = tab(pw$emmeans), pairwise_formula = tab(pw$contrasts)), methods(l, ~phase)),
  glmm = methods(g, ~period),
  wine_by = list(emmeans = tab(by$emmeans), contrasts = tab(by$contrasts),
                 plain = tab(emmeans(w, ~ temp | contact)), two = tab(emmeans(w, ~ temp + contact))))
writeLines(toJSON(res, digits = NA, auto_unbox = TRUE), file.path(out, "emmeans_specs.json"))
# at=: numeric values (averaged over, or in the specs) and a subset of factor levels
gs <- glmer(cbind(incidence, size - incidence) ~ period + size + (1 | herd), cbpp, binomial, control = ctrl)
at <- list(fixef = unname(fixef(gs)),
           avg = tab(emmeans(gs, ~period, at = list(size = c(10, 25)))),
           spec = tab(emmeans(gs, ~ size | period, at = list(size = c(10, 25)))),
           subset = tab(emmeans(gs, ~period, at = list(period = c("3", "1")))),
           subset_pairs = tab(pairs(emmeans(gs, ~period, at = list(period = c("3", "1", "4"))))))
res <- jsonlite::fromJSON(file.path(out, "emmeans_specs.json"), simplifyVector = FALSE)
res$at <- at
writeLines(toJSON(res, digits = NA, auto_unbox = TRUE), file.path(out, "emmeans_specs.json"))
