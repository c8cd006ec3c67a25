# emmeans, confint (Wald, profile) and anova(m0, m1) on glmer fits, for tests/test_glmm_after_fit.py.
# Usage: Rscript tests/r/make_glmm_after_fit.R OUTDIR
#   (writes OUTDIR/data/pois_emm.csv and OUTDIR/glmm_after_fit.json; OUTDIR = tests/data/extra)
suppressPackageStartupMessages({ library(lme4); library(emmeans); library(jsonlite) })
out <- commandArgs(TRUE)[1]
ctrl <- glmerControl(optimizer = "bobyqa", optCtrl = list(rhoend = 1e-10), tolPwrss = 1e-12)
emm_options(opt.digits = FALSE)
set.seed(20)
g <- factor(rep(sprintf("g%02d", 1:25), each = 12))
trt <- factor(rep(c("a", "b", "c"), length.out = 300))
x <- round(rnorm(300), 4)
y <- rpois(300, exp(0.4 + c(a = 0, b = 0.5, c = -0.3)[as.character(trt)] + 0.3 * x + rnorm(25, 0, 0.5)[g]))
pois <- data.frame(y = y, trt = trt, x = x, g = g)
write.csv(pois, file.path(out, "data", "pois_emm.csv"), row.names = FALSE)

tab <- function(x) { d <- as.data.frame(x); for (k in names(d)) if (is.factor(d[[k]])) d[[k]] <- as.character(d[[k]]); d }
emm_all <- function(m, spec) {
  e <- emmeans(m, spec)
  list(link = tab(summary(e)), response = tab(summary(e, type = "response")),
       pairs_link = tab(pairs(e)), pairs_response = tab(pairs(e, type = "response")),
       pairs_regrid = tab(pairs(regrid(e))),
       pairs_link_none = tab(pairs(e, adjust = "none")))
}
ci <- function(m, method) { c <- confint(m, method = method, oldNames = FALSE)
  list(names = rownames(c), lower = unname(c[, 1]), upper = unname(c[, 2])) }
lrt <- function(a) list(npar = a$npar, AIC = a$AIC, BIC = a$BIC, logLik = a$logLik,
                        deviance = a$deviance, Chisq = a$Chisq, Df = a$Df, p = a[["Pr(>Chisq)"]])

cb1 <- glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), cbpp, binomial, control = ctrl)
cb0 <- glmer(cbind(incidence, size - incidence) ~ 1 + (1 | herd), cbpp, binomial, control = ctrl)
po1 <- glmer(y ~ trt + x + (1 | g), pois, poisson, control = ctrl)
po0 <- glmer(y ~ x + (1 | g), pois, poisson, control = ctrl)
res <- list(
  cbpp = list(fixef = unname(fixef(cb1)), loglik = as.numeric(logLik(cb1)), emmeans = emm_all(cb1, ~period),
              condvar = as.vector(attr(ranef(cb1, condVar = TRUE)$herd, "postVar")),
              ranef = ranef(cb1)$herd[, 1], wald = ci(cb1, "Wald"), profile = ci(cb1, "profile"), anova = lrt(anova(cb0, cb1))),
  poisson = list(fixef = unname(fixef(po1)), loglik = as.numeric(logLik(po1)), emmeans = emm_all(po1, ~trt),
                 wald = ci(po1, "Wald"), profile = ci(po1, "profile"), anova = lrt(anova(po0, po1))))
# a correlated (1 + x | g) term whose slope SD is near 0: the profile runs over SDs and the correlation
pv <- glmer(y ~ trt + x + (1 + x | g), pois, poisson, control = ctrl)
res$poisson_slopes <- list(fixef = unname(fixef(pv)), loglik = as.numeric(logLik(pv)), profile = ci(pv, "profile"))
# condVar of a Gamma GLMM (lme4 scales it by sigma^2), on tests/data/extra/data/gamma_log.csv
gm <- glmer(y ~ x + (1 | g), read.csv(file.path(out, "data", "gamma_log.csv")), Gamma(link = "log"), control = ctrl)
res$gamma_condvar <- list(sigma = sigma(gm), condvar = as.vector(attr(ranef(gm, condVar = TRUE)$g, "postVar")))
writeLines(toJSON(res, auto_unbox = TRUE, digits = NA, pretty = TRUE, na = "null"), file.path(out, "glmm_after_fit.json"))
