# Observation-level random effects in glmer (issue 17, item 10): lme4 accepts one level per
# observation in a GLMM (glFormula's checks use allow.n = TRUE) while lmer refuses it.
# Reference fits with tight tolerances for an over-dispersed binomial (cbpp, as in ?cbpp) and an
# over-dispersed Poisson simulated in the layout of lme4's grouseticks (chicks in broods in
# locations, one level of `obs` per chick).
# Usage: Rscript tests/r/make_obs_level_re.R tests/data/checks
suppressPackageStartupMessages({ library(lme4); library(jsonlite) })
out <- commandArgs(TRUE)[1]
dir.create(out, recursive = TRUE, showWarnings = FALSE)
tight <- glmerControl(optimizer = "bobyqa", optCtrl = list(rhoend = 1e-10), tolPwrss = 1e-12)
nv <- function(x) as.list(setNames(as.numeric(x), names(x)))
summ <- function(m) list(
  r_call = paste(deparse(formula(m)), collapse = ""), nobs = nobs(m),
  fixef = nv(fixef(m)), se = nv(sqrt(diag(as.matrix(vcov(m))))),
  theta = nv(getME(m, "theta")), loglik = as.numeric(logLik(m)), aic = AIC(m))

cbpp$obs <- factor(seq_len(nrow(cbpp)))
m1 <- glmer(cbind(incidence, size - incidence) ~ period + (1 | herd) + (1 | obs), cbpp, binomial,
            control = tight)

set.seed(2017)
nloc <- 25; nbrood <- 80
brood <- data.frame(brood = factor(sprintf("b%03d", 1:nbrood)),
                    location = factor(sprintf("L%02d", sample(nloc, nbrood, replace = TRUE))),
                    year = factor(sample(c("95", "96", "97"), nbrood, replace = TRUE)))
loc_height <- round(runif(nloc, 400, 550))
d <- brood[rep(seq_len(nbrood), times = sample(2:6, nbrood, replace = TRUE)), ]
d$height <- loc_height[as.integer(d$location)]
d$cheight <- d$height - mean(d$height)
eta <- 0.6 + c("95" = 0, "96" = 0.9, "97" = -0.8)[as.character(d$year)] - 0.02 * d$cheight +
  rnorm(nloc, 0, 0.6)[as.integer(d$location)] + rnorm(nbrood, 0, 0.7)[as.integer(d$brood)] +
  rnorm(nrow(d), 0, 0.5)
d$ticks <- rpois(nrow(d), exp(eta))
d$obs <- factor(sprintf("o%03d", seq_len(nrow(d))))
rownames(d) <- NULL
d <- d[, c("ticks", "year", "cheight", "brood", "location", "obs")]
write.csv(d, file.path(out, "obs_level_poisson.csv"), row.names = FALSE)
m2 <- glmer(ticks ~ year + cheight + (1 | brood) + (1 | location) + (1 | obs), d, poisson,
            control = tight)
# without the observation-level term, for the comparison in docs/glmer.md
m0 <- glmer(ticks ~ year + cheight + (1 | brood) + (1 | location), d, poisson, control = tight)
# lmer refuses one level per observation (check.nobs.vs.nlev)
lmm_refused <- tryCatch({ lmer(log1p(ticks) ~ year + (1 | obs), d); "" }, error = function(e) conditionMessage(e))

res <- list(lme4 = as.character(packageVersion("lme4")),
            control = "glmerControl(optimizer = 'bobyqa', optCtrl = list(rhoend = 1e-10), tolPwrss = 1e-12)",
            cbpp_obs = summ(m1), poisson_obs = summ(m2), poisson_no_obs = summ(m0),
            lmer_refusal = lmm_refused)
writeLines(toJSON(res, auto_unbox = TRUE, digits = NA, pretty = TRUE), file.path(out, "obs_level_re.json"))
