# Reference numbers for R formula habits (issue 17): R arithmetic in I(), factor()/as.numeric(),
# cbind() binomial responses, offset() in formulas, predict with offsets and value-matched levels,
# factor/logical responses in glmer, `y ~ .`, splines::ns / bs and poly.
# Usage: Rscript tests/r/make_r_habits.R tests/data/r_habits
suppressPackageStartupMessages({ library(lme4); library(splines); library(jsonlite) })
out <- commandArgs(TRUE)[1]
dir.create(out, recursive = TRUE, showWarnings = FALSE)
tight <- glmerControl(optimizer = "bobyqa", optCtrl = list(rhoend = 1e-10), tolPwrss = 1e-12)
# LMMs at the converged optimum too (lme4's default stops short on the random-slope cases)
lmer <- function(formula, data, ...) {
  m <- eval(substitute(lme4::lmer(formula, data, ..., control = lmerControl(optimizer = "bobyqa",
                                                                          optCtrl = list(rhoend = 1e-10)))),
            parent.frame())
  m
}
cases <- list()
num <- function(x) unname(as.numeric(x))
# lme4's predict(newdata) leaves out an offset given as offset= (it keeps offset() terms of the
# formula); interlace reads the offset column from newdata, so for those cases the reference is
# lme4's prediction plus that column: `arg_offset` names it.
summ <- function(m, newdata = NULL, newdata_pop = TRUE, arg_offset = NULL) {
  s <- list(fixef = num(fixef(m)), fixef_names = names(fixef(m)), se = num(sqrt(diag(as.matrix(vcov(m))))),
            loglik = num(logLik(m)), fitted_head = num(head(fitted(m), 10)))
  if (!is.null(newdata)) {
    off <- if (is.null(arg_offset)) 0 else newdata[[arg_offset]]
    s$predict <- num(predict(m, newdata = newdata, allow.new.levels = TRUE)) + off
    if (newdata_pop) s$predict_pop <- num(predict(m, newdata = newdata, re.form = NA)) + off
    if (inherits(m, "glmerMod")) s$predict_response <- family(m)$linkinv(s$predict)
  }
  s
}
add <- function(name, data, call, r_call, m, categorical = NULL, ...) {
  cases[[name]] <<- c(list(name = name, data = data, interlace = call, r_call = r_call,
                           categorical = categorical), summ(m, ...))
}
cbpp_levels <- list(period = I(levels(cbpp$period)))
wr <- function(d, name) { write.csv(d, file.path(out, name), row.names = FALSE); name }

# sleepstudy with Days as integers, Subject as integer ids
ss <- sleepstudy; ss$Subject <- as.integer(as.character(ss$Subject)); ss$Days <- as.integer(ss$Days)
f_ss <- wr(ss, "sleepstudy_int.csv")
ssf <- ss; ssf$Subject <- factor(ssf$Subject)
nd <- head(ssf, 12)
add("pow_in_I", f_ss, list(fn = "fit", formula = "Reaction ~ Days + I(Days^2)", groups = "Subject"),
    "lmer(Reaction ~ Days + I(Days^2) + (1 | Subject))",
    lmer(Reaction ~ Days + I(Days^2) + (1 | Subject), ssf), newdata = nd)
add("arith_in_I", f_ss,
    list(fn = "fit", formula = "Reaction ~ I((Days + 1)^-1) + log(Days + 1, base = 2) + I(Days %/% 3) + I(Days %% 3) + (Days | Subject)"),
    "lmer(Reaction ~ I((Days + 1)^-1) + log(Days + 1, base = 2) + I(Days %/% 3) + I(Days %% 3) + (Days | Subject))",
    lmer(Reaction ~ I((Days + 1)^-1) + log(Days + 1, base = 2) + I(Days %/% 3) + I(Days %% 3) + (Days | Subject), ssf),
    newdata = nd)
add("pow_in_random_term", f_ss, list(fn = "fit", formula = "Reaction ~ Days + (1 + I(Days^2) | Subject)"),
    "lmer(Reaction ~ Days + (1 + I(Days^2) | Subject))",
    lmer(Reaction ~ Days + (1 + I(Days^2) | Subject), ssf), newdata = nd)
ss$off <- 100
f_off <- wr(ss, "sleepstudy_offset.csv")
ssf$off <- 100
add("offset_column", f_off, list(fn = "fit", formula = "Reaction ~ Days", groups = "Subject", offset = "off"),
    "lmer(Reaction ~ Days + (1 | Subject), offset = off)",
    lmer(Reaction ~ Days + (1 | Subject), ssf, offset = off), newdata = head(ssf, 12), arg_offset = "off")
add("offset_in_formula", f_off, list(fn = "fit", formula = "Reaction ~ Days + offset(log(Days + 1) * 10) + (1 | Subject)"),
    "lmer(Reaction ~ Days + offset(log(Days + 1) * 10) + (1 | Subject))",
    lmer(Reaction ~ Days + offset(log(Days + 1) * 10) + (1 | Subject), ssf), newdata = head(ssf, 12))

# ChickWeight: Diet as integer codes, factor() and as.numeric() in the formula
cw <- as.data.frame(ChickWeight); cw$Chick <- as.integer(as.character(cw$Chick)); cw$Diet <- as.integer(cw$Diet)
f_cw <- wr(cw, "chickweight.csv")
cwf <- cw; cwf$Chick <- factor(cwf$Chick)
add("factor_call", f_cw, list(fn = "fit", formula = "weight ~ Time + factor(Diet) + (1 | Chick)"),
    "lmer(weight ~ Time + factor(Diet) + (1 | Chick))",
    lmer(weight ~ Time + factor(Diet) + (1 | Chick), cwf), newdata = head(cwf, 12))
add("as_factor_interaction", f_cw, list(fn = "fit", formula = "weight ~ Time * as.factor(Diet) + (Time | Chick)"),
    "lmer(weight ~ Time * as.factor(Diet) + (Time | Chick))",
    lmer(weight ~ Time * as.factor(Diet) + (Time | Chick), cwf), newdata = head(cwf, 12))
add("as_numeric", f_cw, list(fn = "fit", formula = "weight ~ Time + as.numeric(Diet) + (1 | Chick)"),
    "lmer(weight ~ Time + as.numeric(Diet) + (1 | Chick))",
    lmer(weight ~ Time + as.numeric(Diet) + (1 | Chick), cwf), newdata = head(cwf, 12))
add("ns_spline", f_cw, list(fn = "fit", formula = "weight ~ ns(Time, df = 3) + (1 | Chick)"),
    "lmer(weight ~ ns(Time, df = 3) + (1 | Chick))",
    lmer(weight ~ ns(Time, df = 3) + (1 | Chick), cwf), newdata = data.frame(Time = c(0, 5.5, 21, 25), Chick = factor(c(1, 2, 3, 99))))
add("bs_poly", f_cw, list(fn = "fit", formula = "weight ~ bs(Time, df = 4) + poly(Diet, 2) + (1 | Chick)"),
    "lmer(weight ~ bs(Time, df = 4) + poly(Diet, 2) + (1 | Chick))",
    lmer(weight ~ bs(Time, df = 4) + poly(Diet, 2) + (1 | Chick), cwf), newdata = head(cwf, 12))

# y ~ . : every column but the response and the grouping factor
set.seed(11)
dd <- data.frame(g = sprintf("g%02d", rep(1:20, each = 8)), x = round(rnorm(160), 3), z = round(runif(160), 3),
                 k = sample(c("a", "b", "c"), 160, TRUE))
dd$y <- round(1 + dd$x - 0.5 * dd$z + (dd$k == "b") + rnorm(20)[as.integer(factor(dd$g))] + rnorm(160), 3)
f_dot <- wr(dd, "dot.csv")
add("dot", f_dot, list(fn = "fit", formula = "y ~ . + (1 | g)"), "lmer(y ~ . - g + (1 | g))",
    lmer(y ~ . - g + (1 | g), dd))
add("dot_minus", f_dot, list(fn = "fit", formula = "y ~ . - z", groups = "g"), "lmer(y ~ . - g - z + (1 | g))",
    lmer(y ~ . - g - z + (1 | g), dd))

# cbpp: cbind() response, offset() in a glmer formula, predict on the response scale
cb <- cbpp; cb$herd <- as.integer(as.character(cb$herd))
f_cb <- wr(cb, "cbpp.csv")
cbf <- cbpp
add("cbind_binomial", f_cb, list(fn = "glmer", formula = "cbind(incidence, size - incidence) ~ period + (1 | herd)",
                                 family = "binomial"),
    "glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), binomial, tight)",
    glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), cbf, binomial, control = tight),
    categorical = cbpp_levels, newdata = head(cbf, 10))
add("poisson_offset_formula", f_cb, list(fn = "glmer", formula = "incidence ~ period + offset(log(size)) + (1 | herd)",
                                         family = "poisson"),
    "glmer(incidence ~ period + offset(log(size)) + (1 | herd), poisson, tight)",
    glmer(incidence ~ period + offset(log(size)) + (1 | herd), cbf, poisson, control = tight),
    categorical = cbpp_levels, newdata = head(cbf, 10))
cb$logsize <- log(cb$size); cbf$logsize <- log(cbf$size)
f_cb2 <- wr(cb, "cbpp_logsize.csv")
add("poisson_offset_column", f_cb2, list(fn = "glmer", formula = "incidence ~ period", groups = "herd",
                                         family = "poisson", offset = "logsize"),
    "glmer(incidence ~ period + (1 | herd), poisson, offset = logsize, tight)",
    glmer(incidence ~ period + (1 | herd), cbf, poisson, offset = logsize, control = tight),
    categorical = cbpp_levels, newdata = head(cbf, 10), arg_offset = "logsize")

# factor, character and logical responses in glmer(binomial): first level = failure
set.seed(12)
bb <- data.frame(g = sprintf("g%02d", rep(1:30, each = 10)), x = round(rnorm(300), 3))
eta <- -0.3 + 0.8 * bb$x + rnorm(30, 0, 0.7)[as.integer(factor(bb$g))]
yy <- rbinom(300, 1, plogis(eta))
bb$ok <- yy == 1
bb$txt <- ifelse(yy == 1, "yes", "no")
bb$three <- ifelse(yy == 1, sample(c("mid", "top"), 300, TRUE), "low")
f_bb <- wr(bb, "binary_text.csv")
bbf <- bb; bbf$three <- factor(bbf$three, levels = c("low", "mid", "top"))
m_ok <- glmer(ok ~ x + (1 | g), bbf, binomial, control = tight)
add("logical_response", f_bb, list(fn = "glmer", formula = "ok ~ x + (1 | g)", family = "binomial"),
    "glmer(ok ~ x + (1 | g), binomial, tight)", m_ok)
add("text_response", f_bb, list(fn = "glmer", formula = "txt ~ x + (1 | g)", family = "binomial"),
    "glmer(factor(txt) ~ x + (1 | g), binomial, tight)", glmer(factor(txt) ~ x + (1 | g), bbf, binomial, control = tight))
add("three_level_response", f_bb, list(fn = "glmer", formula = "three ~ x + (1 | g)", family = "binomial"),
    "glmer(three ~ x + (1 | g), binomial, tight) with three a factor (low, mid, top)",
    glmer(three ~ x + (1 | g), bbf, binomial, control = tight), categorical = list(three = I(c("low", "mid", "top"))))

writeLines(toJSON(unname(cases), auto_unbox = TRUE, digits = NA, pretty = TRUE), file.path(out, "cases.json"))
cat("wrote", length(cases), "cases\n")
