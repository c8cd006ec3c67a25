# Partial re.form predictions on other term structures (issue 21, item 4): a double-bar term
# (x || subj), a nested term (1 | batch/cask) (lme4 names its inner grouping cask:batch; interlace
# takes batch:cask too), and a three-level factor slope (1 + B | subj) beside (1 | item) — where lme4 1.1-31's own
# predict(re.form = ~(1 | item)) fails, so that prediction is computed by hand (X beta + the item
# intercepts, 0 for unseen items).
# Usage: Rscript tests/r/make_re_form.R tests/data/verbs
suppressPackageStartupMessages({ library(lme4); library(jsonlite) })
out_dir <- commandArgs(TRUE)[1]
ctrl <- lmerControl(optimizer = "bobyqa", optCtrl = list(rhoend = 1e-10))
ad <- read.csv("tests/data/anova/crossed.csv", stringsAsFactors = TRUE)
pastes <- read.csv("interlace/datasets/pastes.csv", stringsAsFactors = TRUE)
nd <- ad[seq(1, nrow(ad), by = 7), ]
nd2 <- rbind(pastes[seq(1, 60, by = 3), ],
             data.frame(strength = 0, batch = c("A", "Z"), cask = c("z", "a"), sample = "x"))
cases <- list()
add <- function(model, newdata, re_form, values, lme4_predict = TRUE)
  cases[[length(cases) + 1]] <<- list(model = model, newdata = newdata, re_form = re_form,
                                      values = I(as.numeric(values)), lme4_predict = lme4_predict)
pred <- function(m, newdata, rf) predict(m, newdata = newdata, re.form = rf, allow.new.levels = TRUE)
f1 <- "y ~ A * B + x + (x || subj) + (1 | item)"
m1 <- lmer(as.formula(f1), ad, control = ctrl)
add(f1, "anova", "~(1 | item)", pred(m1, nd, ~(1 | item)))
add(f1, "anova", "~(x || subj)", pred(m1, nd, ~(x || subj)))
add(f1, "anova", "~(0 + x | subj)", pred(m1, nd, ~(0 + x | subj)))
f2 <- "strength ~ 1 + (1 | batch/cask)"
m2 <- lmer(as.formula(f2), pastes, control = ctrl)
add(f2, "pastes", "~(1 | batch)", pred(m2, nd2, ~(1 | batch)))
add(f2, "pastes", "~(1 | cask:batch)", pred(m2, nd2, ~(1 | cask:batch)))
f3 <- "y ~ A * B + x + (1 + B | subj) + (1 | item)"
m3 <- lmer(as.formula(f3), ad, control = ctrl)
eta <- drop(model.matrix(~ A * B + x, nd) %*% fixef(m3))
ri <- ranef(m3)$item
fails <- inherits(try(pred(m3, nd, ~(1 | item)), silent = TRUE), "try-error")
add(f3, "anova", "~(1 | item)", eta + ifelse(is.na(match(nd$item, rownames(ri))), 0, ri[match(nd$item, rownames(ri)), 1]),
    lme4_predict = !fails)
add(f3, "anova", "~(1 + B | subj)", pred(m3, nd, ~(1 + B | subj)))
write_json(list(newdata_rows = list(anova = "every 7th row of anova/crossed.csv",
                                    pastes = "every 3rd row of pastes, then batch A/cask z and batch Z/cask a"),
                cases = cases), file.path(out_dir, "re_form.json"), digits = NA, auto_unbox = TRUE, pretty = TRUE)
