# lme4's print(VarCorr(m)) (default comp = "Std.Dev.") and print(VarCorr(m), comp = "Variance") for the
# two models of make_verbs.R, on its data (tests/data/verbs/crossed.csv).
# Usage: Rscript tests/r/make_varcorr_print.R tests/data/verbs
suppressPackageStartupMessages({ library(lme4); library(jsonlite) })
out <- commandArgs(TRUE)[1]
d <- read.csv(file.path(out, "crossed.csv"))
d$subj <- factor(d$subj); d$item <- factor(d$item); d$A <- factor(d$A); d$B <- factor(d$B)
ctrl <- lmerControl(optimizer = "bobyqa", optCtrl = list(rhoend = 1e-10))
models <- list(slopes = "y ~ A * B + x + (1 + x | subj) + (1 + A | item)",
               intercepts = "y ~ A + B + x + (1 | subj) + (1 | item)")
res <- list()
for (nm in names(models)) {
  m <- lmer(as.formula(models[[nm]]), data = d, REML = TRUE, control = ctrl)
  res[[nm]] <- list(default = I(capture.output(print(VarCorr(m)))),
                    variance = I(capture.output(print(VarCorr(m), comp = "Variance"))))
}
res$meta <- list(lme4 = as.character(packageVersion("lme4")))
writeLines(toJSON(res, auto_unbox = TRUE, pretty = TRUE), file.path(out, "varcorr_print.json"))
