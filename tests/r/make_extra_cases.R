# Extra reference fits (same JSON format as ../shared/fixtures) for models beyond the shared set:
# 3 x 3 correlated factor slopes, ML with interactions, nested + crossed, factor slopes without
# intercept, Kenward-Roger with several fixed factors, AR(1) on other data.
# Usage: Rscript tests/r/make_extra_cases.R OUTDIR   (then check_cases.py OUTDIR)
suppressPackageStartupMessages({ library(lme4); library(lmerTest); library(jsonlite); library(nlme) })
out <- commandArgs(TRUE)[1]
for (d in c("data", "cases")) dir.create(file.path(out, d), recursive = TRUE, showWarnings = FALSE)
levels_of <- list()
put_data <- function(df, name) {
  levels_of[[name]] <<- lapply(Filter(is.factor, df), function(f) I(levels(f)))
  write.csv(df, file.path(out, "data", paste0(name, ".csv")), row.names = FALSE)
  paste0(name, ".csv")
}
nv <- function(x) as.list(setNames(as.numeric(x), names(x)))
put_case <- function(case) {
  case$categorical <- levels_of[[sub("\\.csv$", "", case$data)]]
  case <- Filter(Negate(is.null), case)
  writeLines(toJSON(case, auto_unbox = TRUE, digits = NA, pretty = TRUE, na = "null"),
             file.path(out, "cases", paste0(case$name, ".json")))
}
lmm <- function(name, file, call, rform, data, REML = TRUE, kr = REML) {
  m <- lmerTest::lmer(as.formula(rform), data = data, REML = REML, control = lmerControl(optimizer = "bobyqa"))
  cs <- summary(m, ddf = "Satterthwaite")$coefficients
  vc <- as.data.frame(VarCorr(m))
  case <- list(name = name, data = file, interlace = call, r_call = rform, method = if (REML) "REML" else "ML",
    nobs = nobs(m), ngrps = as.list(ngrps(m)), fixef = nv(fixef(m)), se = nv(cs[, "Std. Error"]),
    df_satterthwaite = nv(cs[, "df"]), p_satterthwaite = nv(cs[, "Pr(>|t|)"]), sigma = sigma(m),
    theta = as.numeric(getME(m, "theta")),
    varcorr = lapply(seq_len(nrow(vc)), function(i) list(grp = vc$grp[i], var1 = vc$var1[i], var2 = vc$var2[i],
                                                          vcov = vc$vcov[i], sdcor = vc$sdcor[i])),
    loglik = as.numeric(logLik(m)), aic = AIC(m), bic = BIC(m), singular = isSingular(m),
    ranef = lapply(ranef(m), function(d) list(levels = rownames(d), columns = as.list(d))))
  if (kr) {
    k <- summary(m, ddf = "Kenward-Roger")$coefficients
    case$df_kenward_roger <- nv(k[, "df"]); case$se_kenward_roger <- nv(k[, "Std. Error"])
  }
  put_case(case)
}

set.seed(12)
ns <- 40; ni <- 30
d <- expand.grid(subject = sprintf("s%02d", 1:ns), item = sprintf("i%02d", 1:ni))
d$condition <- factor(c("a", "b", "c")[(as.integer(d$subject) + as.integer(d$item)) %% 3 + 1])
S <- matrix(c(2500, -300, -200, -300, 900, 300, -200, 300, 1200), 3)
bs <- MASS::mvrnorm(ns, rep(0, 3), S); bi <- rnorm(ni, 0, 25)
X <- model.matrix(~ condition, d)
d$rt <- as.numeric(X %*% c(500, 40, 25) + rowSums(X * bs[as.integer(d$subject), ]) + bi[as.integer(d$item)] +
                   rnorm(nrow(d), 0, 60))
d <- d[sample(nrow(d), round(0.9 * nrow(d))), c("rt", "condition", "subject", "item")]
f <- put_data(d, "three_level")
lmm("factor_slopes_3x3_reml", f, list(fn = "fit", formula = "rt ~ condition",
    random = list("(1 + condition | subject)", "(1 | item)"), method = "REML"),
    "rt ~ condition + (1 + condition | subject) + (1 | item)", d)
lmm("factor_slopes_no_intercept_ml", f, list(fn = "fit", formula = "rt ~ condition",
    random = list("(0 + condition | subject)", "(1 | item)"), method = "ML"),
    "rt ~ condition + (0 + condition | subject) + (1 | item)", d, REML = FALSE)

o <- as.data.frame(nlme::Orthodont); o$Subject <- factor(as.character(o$Subject))
o$Sex <- factor(as.character(o$Sex), levels = c("Male", "Female"))
f <- put_data(o, "orthodont_lmm")
lmm("orthodont_interaction_ml", f, list(fn = "fit", formula = "distance ~ age * Sex",
    random = list("(age | Subject)"), method = "ML"), "distance ~ age * Sex + (age | Subject)", o, REML = FALSE)

set.seed(5)
nb <- 12; nc <- 4; nr <- 10
e <- expand.grid(rep = 1:3, cask = letters[1:nc], batch = sprintf("B%02d", 1:nb), rater = sprintf("r%02d", 1:nr))
e <- e[sample(nrow(e), 700), ]
e$dose <- round(runif(nrow(e), 0, 3), 2)
bb <- rnorm(nb, 0, 2); bc <- rnorm(nb * nc, 0, 1.5); br <- rnorm(nr, 0, 1)
e$y <- 10 + 0.8 * e$dose + bb[as.integer(e$batch)] + bc[(as.integer(e$batch) - 1) * nc + as.integer(e$cask)] +
       br[as.integer(e$rater)] + rnorm(nrow(e))
e <- e[, c("y", "dose", "batch", "cask", "rater")]
e$batch <- factor(e$batch); e$cask <- factor(e$cask); e$rater <- factor(e$rater)
f <- put_data(e, "nested_crossed")
lmm("nested_plus_crossed_reml", f, list(fn = "fit", formula = "y ~ dose",
    random = list("(1 | batch/cask)", "(1 | rater)"), method = "REML"),
    "y ~ dose + (1 | batch/cask) + (1 | rater)", e)

w <- read.csv(file.path(commandArgs(TRUE)[2], "data", "wine.csv"))
w$temp <- factor(w$temp, levels = c("cold", "warm")); w$contact <- factor(w$contact, levels = c("no", "yes"))
w$judge <- factor(w$judge)
w <- w[, c("response", "temp", "contact", "judge")]
f <- put_data(w, "wine_lmm")
lmm("wine_kr_two_factors_reml", f, list(fn = "fit", formula = "response ~ temp * contact",
    random = list("(1 | judge)", "(0 + temp | judge)"), method = "REML"),
    "response ~ temp * contact + (1 | judge) + (0 + temp | judge)", w)

bw <- as.data.frame(nlme::BodyWeight); bw$Rat <- factor(as.character(bw$Rat))
bw$Diet <- factor(as.character(bw$Diet)); bw$week <- ave(bw$Time, bw$Rat, FUN = seq_along)
bw <- bw[, c("weight", "Time", "Diet", "Rat", "week")]
f <- put_data(bw, "bodyweight")
mm <- lme(weight ~ Time + Diet, random = ~ 1 | Rat, data = bw, correlation = corAR1(form = ~ week | Rat),
          method = "REML")
put_case(list(name = "bodyweight_ar1_reml", data = f,
  interlace = list(fn = "fit", formula = "weight ~ Time + Diet", groups = "Rat", method = "REML",
                   correlation = list(type = "AR1", time = "week", group = "Rat")),
  r_call = "lme(weight ~ Time + Diet, random = ~1|Rat, correlation = corAR1(form = ~week|Rat))",
  fixef = nv(fixef(mm)), se = nv(sqrt(diag(vcov(mm)))), sigma = mm$sigma,
  phi = as.numeric(coef(mm$modelStruct$corStruct, unconstrained = FALSE)),
  loglik = as.numeric(logLik(mm)), aic = AIC(mm), bic = BIC(mm)))
cat("extra cases written to", out, "\n")
