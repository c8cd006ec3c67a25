# Random slopes on uncentred calendar years (issue 17, item 11). The random part (1 + Year | g)
# is the same model as (1 + I(Year - c) | g): same likelihood, with b = B b_c for B = [1 -c; 0 1]
# (b_c0 + b_c1 (Year - c) = (b_c0 - c b_c1) + b_c1 Year), so T = chol(B T_c T_c' B'). lme4 fitted on the uncentred
# years stops short of the optimum with every optimizer at its defaults (and drifts away from it
# even when started there), so the reference is lmerTest::lmer on the centred random part with a
# tight bobyqa, its θ mapped back to the uncentred columns. The fixed part is written as the user
# wrote it (uncentred), so fixef, SEs, Satterthwaite df and logLik need no conversion.
# Usage: Rscript tests/r/make_uncentred_slopes.R tests/data/checks
suppressPackageStartupMessages({ library(lme4); library(lmerTest); library(jsonlite) })
out <- commandArgs(TRUE)[1]
dir.create(out, recursive = TRUE, showWarnings = FALSE)
nv <- function(x) as.list(setNames(as.numeric(x), names(x)))
tight <- lmerControl(optimizer = "bobyqa", optCtrl = list(rhoend = 1e-12, maxfun = 1e5))

uncentred_theta <- function(m, shift) {
  Tc <- t(as.matrix(getME(m, "Lambdat")[1:2, 1:2]))
  B <- matrix(c(1, 0, -shift, 1), 2)  # column-major: [1 -shift; 0 1]
  S <- B %*% Tc %*% t(Tc) %*% t(B)
  L <- t(chol(S))
  c(L[1, 1], L[2, 1], L[2, 2])
}

reference <- function(name, d, response, x, group, shift, REML) {
  d$xc__ <- d[[x]] - shift
  fc <- as.formula(sprintf("%s ~ %s + (1 + xc__ | %s)", response, x, group))
  fu <- as.formula(sprintf("%s ~ %s + (1 + %s | %s)", response, x, x, group))
  m <- lmerTest::lmer(fc, d, REML = REML, control = tight)
  cs <- summary(m, ddf = "Satterthwaite")$coefficients
  th <- uncentred_theta(m, shift)
  # what lme4 reports when fitted on the uncentred years as written
  ld <- suppressWarnings(suppressMessages(lme4::lmer(fu, d, REML = REML)))
  lb <- suppressWarnings(suppressMessages(lme4::lmer(fu, d, REML = REML, control = lmerControl(optimizer = "bobyqa"))))
  list(name = name, formula = sprintf("%s ~ %s", response, x), random = sprintf("(%s | %s)", x, group),
       method = if (REML) "REML" else "ML", nobs = nobs(m),
       fixef = nv(fixef(m)), se = nv(cs[, "Std. Error"]), df = nv(cs[, "df"]),
       loglik = as.numeric(logLik(m)), sigma = sigma(m), theta = th,
       lme4_default_uncentred_loglik = as.numeric(logLik(ld)),
       lme4_bobyqa_uncentred_loglik = as.numeric(logLik(lb)))
}

cases <- list()
s <- as.data.frame(sleepstudy); s$Year <- s$Days + 2000
for (reml in c(TRUE, FALSE))
  cases[[length(cases) + 1]] <- reference("sleepstudy_year", s, "Reaction", "Year", "Subject", 2000, reml)

o <- as.data.frame(nlme::Orthodont); o$Subject <- factor(as.character(o$Subject)); o$Year <- o$age + 1990
for (reml in c(TRUE, FALSE))
  cases[[length(cases) + 1]] <- reference("orthodont_year", o, "distance", "Year", "Subject", 2000, reml)

# a firm panel over calendar years 1985-2020, unbalanced, correlated intercepts and trends
set.seed(1117)
nf <- 30
panel <- do.call(rbind, lapply(seq_len(nf), function(i) {
  yrs <- sort(sample(1985:2020, sample(6:20, 1)))
  data.frame(firm = sprintf("f%02d", i), year = yrs)
}))
u <- MASS::mvrnorm(nf, c(0, 0), matrix(c(9, -0.6, -0.6, 0.25), 2))
fi <- as.integer(factor(panel$firm))
panel$sales <- round(50 + 0.8 * (panel$year - 2000) + u[fi, 1] + u[fi, 2] * (panel$year - 2000) +
                     rnorm(nrow(panel), 0, 2), 3)
panel <- panel[, c("sales", "year", "firm")]
write.csv(panel, file.path(out, "firm_panel.csv"), row.names = FALSE)
for (reml in c(TRUE, FALSE))
  cases[[length(cases) + 1]] <- reference("firm_panel", panel, "sales", "year", "firm", 2000, reml)

# lme4's own convergence check at a point of the uncentred sleepstudy fit: the derivatives it
# computed and the max|grad| it reported (interlace's check must give the same statistic)
s$xc__ <- s$Year - 2000
mc <- lmer(Reaction ~ Year + (1 + xc__ | Subject), s, control = tight)
mu <- suppressWarnings(lmer(Reaction ~ Year + (Year | Subject), s, start = uncentred_theta(mc, 2000),
                            control = tight))
conv <- mu@optinfo$conv$lme4
d <- mu@optinfo$derivs
lme4_check <- list(theta = as.numeric(getME(mu, "theta")), lower = c(0, -1e300, 0),
                   gradient = as.numeric(d$gradient), hessian = unname(d$Hessian),
                   max_grad = max(pmin(abs(solve(chol(d$Hessian), d$gradient)), abs(d$gradient))),
                   messages = unlist(conv$messages))

res <- list(lme4 = as.character(packageVersion("lme4")), lmerTest = as.character(packageVersion("lmerTest")),
            control = "lmerControl(optimizer = 'bobyqa', optCtrl = list(rhoend = 1e-12, maxfun = 1e5))",
            cases = cases, lme4_check = lme4_check)
writeLines(toJSON(res, auto_unbox = TRUE, digits = NA, pretty = TRUE), file.path(out, "uncentred_slopes.json"))
for (cs in cases) cat(sprintf("%-16s %-4s logLik %.8f  lme4 default %.8f  lme4 bobyqa %.8f\n", cs$name, cs$method,
                              cs$loglik, cs$lme4_default_uncentred_loglik, cs$lme4_bobyqa_uncentred_loglik))
