# Reference glmer fits for the Gamma and negative-binomial families (issue 7), in the JSON format of
# ../shared/fixtures, plus "tight": the same fit with tight PIRLS/optimizer tolerances.
# Usage: Rscript tests/r/make_glmm_cases.R OUTDIR
suppressPackageStartupMessages({ library(lme4); library(jsonlite) })
out <- commandArgs(TRUE)[1]
for (d in c("data", "cases")) dir.create(file.path(out, d), recursive = TRUE, showWarnings = FALSE)
nv <- function(x) as.list(setNames(as.numeric(x), names(x)))
tight <- glmerControl(optimizer = "bobyqa", optCtrl = list(rhoend = 1e-10), tolPwrss = 1e-12)
summ <- function(m) {
  s <- list(fixef = nv(fixef(m)), se = nv(sqrt(diag(as.matrix(vcov(m))))),
            theta = as.numeric(getME(m, "theta")), loglik = as.numeric(logLik(m)),
            df = attr(logLik(m), "df"), aic = AIC(m), bic = BIC(m), sigma = sigma(m),
            varcorr = as.data.frame(VarCorr(m))$sdcor[1:length(getME(m, "theta"))])
  if (grepl("Negative Binomial", family(m)$family)) s$nb_theta <- getME(m, "glmer.nb.theta")
  s
}
put <- function(name, d, call, r_call, m, mt) {
  write.csv(d, file.path(out, "data", paste0(name, ".csv")), row.names = FALSE)
  case <- c(list(name = name, data = paste0(name, ".csv"), interlace = call, r_call = r_call,
                 nobs = nobs(m), fixef_names = names(fixef(m))), summ(m),
            list(tight = summ(mt), categorical = lapply(Filter(is.factor, d), function(f) I(levels(f)))))
  writeLines(toJSON(case, auto_unbox = TRUE, digits = NA, pretty = TRUE, na = "null"),
             file.path(out, "cases", paste0(name, ".json")))
}

set.seed(7)
m <- 30; k <- 15
d <- data.frame(g = factor(sprintf("g%02d", rep(1:m, each = k))), x = round(rnorm(m * k), 3))
b <- rnorm(m, 0, 0.4)
d$y <- round(rgamma(m * k, shape = 4, scale = exp(1 + 0.3 * d$x + b[as.integer(d$g)]) / 4), 4)
f <- y ~ x + (1 | g)
put("gamma_log", d, list(fn = "glmer", formula = "y ~ x", groups = "g", family = "Gamma", link = "log"),
    "glmer(y ~ x + (1 | g), family = Gamma(link = 'log'))",
    glmer(f, d, family = Gamma(link = "log")), glmer(f, d, family = Gamma(link = "log"), control = tight))

set.seed(8)
d <- expand.grid(s = factor(sprintf("s%02d", 1:25)), i = factor(sprintf("i%02d", 1:12)))
d$x <- round(runif(nrow(d)), 3)
mu <- 1 / (0.5 + 0.2 * d$x + rnorm(25, 0, 0.05)[as.integer(d$s)] + rnorm(12, 0, 0.03)[as.integer(d$i)])
d$y <- round(rgamma(nrow(d), shape = 6, scale = mu / 6), 4)
f <- y ~ x + (1 | s) + (1 | i)
put("gamma_inverse_crossed", d, list(fn = "glmer", formula = "y ~ x", groups = list("s", "i"), family = "Gamma"),
    "glmer(y ~ x + (1 | s) + (1 | i), family = Gamma)",
    glmer(f, d, family = Gamma), glmer(f, d, family = Gamma, control = tight))

set.seed(9)
m <- 40; k <- 10
d <- data.frame(g = factor(sprintf("g%02d", rep(1:m, each = k))), x = round(rnorm(m * k), 3),
                t = round(runif(m * k, 1, 4), 2))
d$y <- rnbinom(m * k, size = 2, mu = d$t * exp(0.5 + 0.4 * d$x + rnorm(m, 0, 0.5)[as.integer(d$g)]))
d$logt <- log(d$t)
f <- y ~ x + (1 | g)
put("negbin_offset", d, list(fn = "glmer", formula = "y ~ x", groups = "g", family = "negative_binomial",
                             offset = "logt"),
    "glmer.nb(y ~ x + (1 | g), offset = logt)",
    glmer.nb(f, d, offset = logt), glmer.nb(f, d, offset = logt, control = tight))

# crossed subjects × items with correlated subject slopes (issue 19): binary accuracy, a ±½
# condition counterbalanced over items; also the nAGQ = 0 fit (interlace's nAGQ=0 / fast=True).
# "varcorr" holds lme4's VarCorr sdcor column: SD(Intercept|subj), SD(cond|subj), their
# correlation, SD(Intercept|item).
set.seed(19)
ns <- 50; ni <- 40
d <- expand.grid(item = factor(sprintf("i%02d", 1:ni)), subj = factor(sprintf("s%02d", 1:ns)))
d <- d[, c("subj", "item")]
d$cond <- ifelse((as.integer(d$subj) + as.integer(d$item)) %% 2 == 0, -0.5, 0.5)
L <- t(chol(matrix(c(0.8, 0.3, 0.3, 0.4), 2)))
bs <- t(L %*% matrix(rnorm(2 * ns), 2))
eta <- 0.8 + 0.5 * d$cond + bs[as.integer(d$subj), 1] + bs[as.integer(d$subj), 2] * d$cond +
  rnorm(ni, 0, 0.5)[as.integer(d$item)]
d$acc <- rbinom(nrow(d), 1, plogis(eta))
f <- acc ~ cond + (1 + cond | subj) + (1 | item)
# lme4's defaults stop short here (SEs ~2 % off): the reference is the tight fit, the default and
# the nAGQ = 0 fits are kept beside it
mt <- glmer(f, d, family = binomial, control = tight)
m <- glmer(f, d, family = binomial)
m0 <- glmer(f, d, family = binomial, nAGQ = 0, control = tight)
name <- "crossed_slopes_bernoulli"
write.csv(d, file.path(out, "data", paste0(name, ".csv")), row.names = FALSE)
case <- c(list(name = name, data = paste0(name, ".csv"),
               interlace = list(fn = "glmer", formula = "acc ~ cond",
                                random = list("(1 + cond | subj)", "(1 | item)"), family = "binomial"),
               r_call = paste("glmer(acc ~ cond + (1 + cond | subj) + (1 | item), family = binomial,",
                              "control = glmerControl(tolPwrss = 1e-12, optCtrl = list(rhoend = 1e-10)))"),
               nobs = nobs(mt), fixef_names = names(fixef(mt))),
          summ(mt),
          list(lme4_default = summ(m),
               nagq0 = list(fixef = nv(fixef(m0)), se = nv(sqrt(diag(as.matrix(vcov(m0))))),
                            theta = as.numeric(getME(m0, "theta")), loglik = as.numeric(logLik(m0))),
               categorical = lapply(Filter(is.factor, d), function(f) I(levels(f)))))
writeLines(toJSON(case, auto_unbox = TRUE, digits = NA, pretty = TRUE, na = "null"),
           file.path(out, "cases", paste0(name, ".json")))
