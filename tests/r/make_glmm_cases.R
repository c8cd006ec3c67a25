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
