# Printed reports of lme4/lmerTest on interlace's bundled datasets (issue 21, item 5): lmerTest's
# summary and lme4's print for an ML fit and a weighted REML fit, and glmer's summary for a
# Gamma(log) model (t value with a dispersion). Models with numeric covariates only, so that the
# coefficient names are the same in R and interlace.
# Usage: Rscript tests/r/make_reports.R tests/data/verbs
suppressPackageStartupMessages({ library(lmerTest); library(jsonlite) })
out <- commandArgs(TRUE)[1]
ctrl <- lmerControl(optimizer = "bobyqa", optCtrl = list(rhoend = 1e-10))
gctrl <- glmerControl(optimizer = "bobyqa", optCtrl = list(rhoend = 1e-10), tolPwrss = 1e-12)
orthodont <- read.csv("interlace/datasets/orthodont.csv")
sleepstudy <- read.csv("interlace/datasets/sleepstudy.csv"); sleepstudy$Subject <- factor(sleepstudy$Subject)
w <- rep(c(1, 2), 90)
report <- function(m, data, formula, ...) list(data = data, formula = formula, args = list(...),
                                               summary = I(capture.output(print(summary(m)))),
                                               print = I(capture.output(print(m))))
res <- list(
  orthodont_ml = report(lmer(distance ~ age + (1 + age | Subject), orthodont, REML = FALSE, control = ctrl),
                        "orthodont", "distance ~ age + (1 + age | Subject)", method = "ML"),
  sleepstudy_weighted = report(lmer(Reaction ~ Days + (1 | Subject), sleepstudy, weights = w, control = ctrl),
                               "sleepstudy", "Reaction ~ Days + (1 | Subject)", weights = "1, 2 alternating"),
  orthodont_kr = list(data = "orthodont", formula = "distance ~ age + (1 + age | Subject)", args = list(ddf = "Kenward-Roger"),
                      summary = I(capture.output(print(summary(lmer(distance ~ age + (1 + age | Subject), orthodont,
                                                                    control = ctrl), ddf = "Kenward-Roger"))))),
  sleepstudy_gamma = report(glmer(Reaction ~ Days + (1 | Subject), sleepstudy, Gamma(link = "log"), control = gctrl),
                            "sleepstudy", "Reaction ~ Days + (1 | Subject)", family = "Gamma", link = "log")
)
write_json(res, file.path(out, "reports.json"), digits = NA, auto_unbox = TRUE, pretty = TRUE)
