# Reference numbers for the small verbs and partial re.form predictions (issue 21, items 3-4):
# lme4's coef, fixef, ranef(condVar = TRUE), as.data.frame(VarCorr), REMLcrit and
# predict(newdata, re.form = NULL / NA / a subset of random terms, allow.new.levels = TRUE)
# on an unbalanced crossed subject x item design with a two- and a three-level factor.
# lme4 1.1-31 fails on some partial re.form (a factor slope in another term): every partial
# prediction is therefore also computed by hand (X beta + the kept terms' Z b), and the JSON
# says whether predict() itself answered.
# Usage: Rscript tests/r/make_verbs.R tests/data/verbs
suppressPackageStartupMessages({ library(lme4); library(jsonlite) })
out <- commandArgs(TRUE)[1]
dir.create(out, recursive = TRUE, showWarnings = FALSE)
ctrl <- lmerControl(optimizer = "bobyqa", optCtrl = list(rhoend = 1e-10))
num <- function(x) unname(as.numeric(x))

set.seed(321)
ns <- 20; ni <- 14
d <- expand.grid(subj = sprintf("s%02d", 1:ns), item = sprintf("i%02d", 1:ni), stringsAsFactors = FALSE)
si <- match(d$subj, sprintf("s%02d", 1:ns)); ii <- match(d$item, sprintf("i%02d", 1:ni))
d$A <- ifelse((si + ii) %% 2 == 0, "a1", "a2")                                  # within both
d$B <- sample(c("b1", "b2", "b3"), nrow(d), replace = TRUE)
d$x <- round(rnorm(nrow(d)), 3)
us <- rnorm(ns, sd = 1.0); usx <- rnorm(ns, sd = 0.4); ui <- rnorm(ni, sd = 0.7); uia <- rnorm(ni, sd = 0.5)
eta <- 5 + 0.4 * (d$A == "a2") + c(b1 = 0, b2 = 0.5, b3 = -0.3)[d$B] + (0.3 + usx[si]) * d$x +
  us[si] + ui[ii] + uia[ii] * (d$A == "a2") - 0.4 * (d$A == "a2" & d$B == "b3")
d$y <- round(eta + rnorm(nrow(d), sd = 0.9), 4)
d <- d[sort(sample(nrow(d), round(0.85 * nrow(d)))), ]
write.csv(d, file.path(out, "crossed.csv"), row.names = FALSE)
d$subj <- factor(d$subj); d$item <- factor(d$item); d$A <- factor(d$A); d$B <- factor(d$B)

# new data: 40 fitted rows and 6 rows with unseen subjects and/or items
nd <- d[seq(1, nrow(d), length.out = 40), c("subj", "item", "A", "B", "x")]
nd$subj <- as.character(nd$subj); nd$item <- as.character(nd$item)
extra <- data.frame(subj = c("s99", "s98", "s01", "s02", "s97", "s03"),
                    item = c("i01", "i02", "i99", "i98", "i97", "i05"),
                    A = c("a1", "a2", "a2", "a1", "a2", "a2"), B = c("b1", "b2", "b3", "b3", "b1", "b2"),
                    x = c(0.5, -1.2, 0.3, 1.1, 0, -0.4))
nd <- rbind(nd, extra)
nd_r <- nd
nd_r$A <- factor(nd_r$A, levels = levels(d$A)); nd_r$B <- factor(nd_r$B, levels = levels(d$B))

by_hand <- function(m, newdata, keep) {
  X <- model.matrix(delete.response(terms(m)), newdata)
  eta <- drop(X %*% fixef(m))
  re <- ranef(m)
  for (g in keep) {
    lhs <- re[[g]]
    term <- findbars(formula(m))[[which(vapply(findbars(formula(m)), function(b) deparse(b[[3]]), "") == g)]]
    Zt <- model.matrix(as.formula(paste("~", deparse(term[[2]]))), newdata)
    idx <- match(as.character(newdata[[g]]), rownames(lhs))
    B <- as.matrix(lhs[ifelse(is.na(idx), 1, idx), colnames(Zt), drop = FALSE])
    contrib <- rowSums(Zt * B)
    contrib[is.na(idx)] <- 0
    eta <- eta + contrib
  }
  num(eta)
}

models <- list(
  slopes = "y ~ A * B + x + (1 + x | subj) + (1 + A | item)",
  intercepts = "y ~ A + B + x + (1 | subj) + (1 | item)"
)
res <- list()
for (nm in names(models)) {
  m <- lmer(as.formula(models[[nm]]), data = d, REML = TRUE, control = ctrl)
  mml <- lmer(as.formula(models[[nm]]), data = d, REML = FALSE, control = ctrl)
  cf <- coef(m); re <- ranef(m, condVar = TRUE)
  vc <- as.data.frame(VarCorr(m))
  frames <- function(lst) lapply(lst, function(f) list(levels = I(rownames(f)), columns = I(colnames(f)),
                                                        values = lapply(f, function(v) I(num(v)))))
  postvar <- lapply(re, function(f) { a <- attr(f, "postVar"); list(dim = dim(a), values = I(num(a))) })
  groups <- vapply(findbars(formula(m)), function(b) deparse(b[[3]]), "")
  bars <- vapply(findbars(formula(m)), function(b) paste0("(", deparse(b), ")"), "")
  preds <- list()
  reforms <- c(list(all = NULL, none = NA), setNames(as.list(bars), bars))
  for (rf in names(reforms)) {
    keep <- if (rf == "all") groups else if (rf == "none") character(0) else groups[bars == rf]
    hand <- by_hand(m, nd_r, keep)
    lme4_pred <- tryCatch(num(predict(m, newdata = nd_r,
                                      re.form = if (rf %in% c("all", "none")) reforms[[rf]] else as.formula(paste("~", rf)),
                                      allow.new.levels = TRUE)), error = function(e) conditionMessage(e))
    agrees <- is.numeric(lme4_pred) && max(abs(lme4_pred - hand)) < 1e-8
    preds[[rf]] <- list(re_form = rf, values = I(hand), lme4_predict_agrees = agrees,
                        lme4_error = if (is.numeric(lme4_pred)) NA else lme4_pred)
  }
  res[[nm]] <- list(
    formula = models[[nm]], fixef = as.list(fixef(m)), coef = frames(cf), ranef = frames(re),
    postvar = postvar, varcorr = list(grp = I(vc$grp), var1 = I(vc$var1), var2 = I(vc$var2),
                                      vcov = I(num(vc$vcov)), sdcor = I(num(vc$sdcor))),
    remlcrit = REMLcrit(m), deviance_ml = deviance(mml), loglik = num(logLik(m)),
    theta = num(getME(m, "theta")), predictions = preds,
    varcorr_print = I(capture.output(print(VarCorr(m), comp = c("Variance", "Std.Dev."))))
  )
}
# printed reports (coefficient names the same in R and interlace): lmerTest's summary, lme4's print
library(lmerTest, warn.conflicts = FALSE)
for (reml in c(TRUE, FALSE)) {
  mp <- lmerTest::lmer(y ~ x + (1 + x | subj) + (1 | item), data = d, REML = reml, control = ctrl)
  res[[paste0("print_", if (reml) "reml" else "ml")]] <- list(
    formula = "y ~ x + (1 + x | subj) + (1 | item)",
    summary = I(capture.output(print(summary(mp)))), print = I(capture.output(print(mp))))
}

# a binomial GLMM: coef, VarCorr (no residual row), predictions on the link scale
gctrl <- glmerControl(optimizer = "bobyqa", optCtrl = list(rhoend = 1e-10), tolPwrss = 1e-12)
d$yb <- as.integer(d$y > median(d$y))
g <- glmer(yb ~ A + x + (1 | subj) + (1 | item), data = d, family = binomial, control = gctrl)
gvc <- as.data.frame(VarCorr(g))
gcf <- coef(g)
res$glmm <- list(
  formula = "yb ~ A + x + (1 | subj) + (1 | item)", fixef = as.list(fixef(g)),
  coef = lapply(gcf, function(f) list(levels = I(rownames(f)), columns = I(colnames(f)),
                                      values = lapply(f, function(v) I(num(v))))),
  varcorr = list(grp = I(gvc$grp), vcov = I(num(gvc$vcov)), sdcor = I(num(gvc$sdcor))),
  predictions = list(
    all = I(num(predict(g, newdata = nd_r, allow.new.levels = TRUE))),
    none = I(num(predict(g, newdata = nd_r, re.form = NA))),
    `(1 | item)` = I(num(predict(g, newdata = nd_r, re.form = ~(1 | item), allow.new.levels = TRUE))),
    `(1 | subj) response` = I(num(predict(g, newdata = nd_r, re.form = ~(1 | subj), allow.new.levels = TRUE,
                                          type = "response")))))
# glmer's printed reports (summary and print) for a model whose coefficient names R and interlace share
gp <- glmer(yb ~ x + (1 | subj) + (1 | item), data = d, family = binomial, control = gctrl)
res$print_glmm <- list(formula = "yb ~ x + (1 | subj) + (1 | item)",
                       summary = I(capture.output(print(summary(gp)))), print = I(capture.output(print(gp))))
write.csv(nd, file.path(out, "newdata.csv"), row.names = FALSE)
write_json(res, file.path(out, "verbs.json"), digits = NA, auto_unbox = TRUE, pretty = TRUE, na = "null")
