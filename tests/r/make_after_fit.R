# Reference numbers for interlace's after-fit tools (emmeans, contrasts, R², ICC).
# Usage: Rscript tests/r/make_after_fit.R FIXTURES_DIR OUT_JSON
# Needs lme4, lmerTest, pbkrtest, emmeans, performance, jsonlite (Debian: r-cran-*).
suppressPackageStartupMessages({
  library(lme4); library(lmerTest); library(emmeans); library(performance); library(jsonlite)
})
args <- commandArgs(trailingOnly = TRUE)
fx <- args[1]; out <- args[2]
rd <- function(f) read.csv(file.path(fx, "data", f), stringsAsFactors = FALSE)

emm_tab <- function(e) {
  s <- as.data.frame(summary(e))
  s[] <- lapply(s, function(x) if (is.factor(x)) as.character(x) else x)
  s
}
pair_tab <- function(e, adjust) {
  s <- as.data.frame(summary(pairs(e, adjust = adjust)))
  s[] <- lapply(s, function(x) if (is.factor(x)) as.character(x) else x)
  s
}

res <- list()

st <- rd("stroop_sim.csv")
st$condition <- factor(st$condition, levels = c("congruent", "incongruent"))
m_st <- lmer(rt ~ condition + (1 + condition | subject) + (1 + condition | item), st, REML = TRUE)
res$stroop <- list(
  data = "stroop_sim.csv", formula = "rt ~ condition",
  random = c("(1 + condition | subject)", "(1 + condition | item)"),
  categorical = list(condition = levels(st$condition)),
  emmeans_satterthwaite = emm_tab(emmeans(m_st, ~ condition, lmer.df = "satterthwaite")),
  emmeans_kenward_roger = emm_tab(emmeans(m_st, ~ condition, lmer.df = "kenward-roger")),
  pairs_satterthwaite = pair_tab(emmeans(m_st, ~ condition, lmer.df = "satterthwaite"), "tukey"),
  r2 = as.list(unlist(r2_nakagawa(m_st))), icc = as.list(unlist(icc(m_st)))
)

wi <- rd("wine.csv")
wi$temp <- factor(wi$temp, levels = c("cold", "warm"))
wi$contact <- factor(wi$contact, levels = c("no", "yes"))
wi$judge <- factor(wi$judge)
m_wi <- lmer(response ~ temp * contact + (1 | judge), wi, REML = TRUE)
e_wi <- emmeans(m_wi, ~ temp * contact, lmer.df = "satterthwaite")
res$wine <- list(
  data = "wine.csv", formula = "response ~ temp * contact", random = c("(1 | judge)"),
  categorical = list(temp = levels(wi$temp), contact = levels(wi$contact), judge = levels(wi$judge)),
  emmeans_satterthwaite = emm_tab(e_wi),
  pairs_tukey = pair_tab(e_wi, "tukey"),
  pairs_holm = pair_tab(e_wi, "holm"),
  emmeans_by = emm_tab(emmeans(m_wi, ~ temp | contact, lmer.df = "satterthwaite")),
  pairs_by_bonferroni = pair_tab(emmeans(m_wi, ~ temp | contact, lmer.df = "satterthwaite"), "bonferroni"),
  emmeans_kenward_roger = emm_tab(emmeans(m_wi, ~ temp * contact, lmer.df = "kenward-roger")),
  r2 = as.list(unlist(r2_nakagawa(m_wi))), icc = as.list(unlist(icc(m_wi)))
)

cb <- rd("cbpp.csv")
cb$period <- factor(cb$period, levels = c("1", "2", "3", "4"))
cb$herd <- factor(cb$herd, levels = as.character(1:15))
m_cb <- lmer(prop ~ period + (1 | herd), cb, REML = TRUE)
e_cb <- emmeans(m_cb, ~ period, lmer.df = "satterthwaite")
res$cbpp_lmm <- list(
  data = "cbpp.csv", formula = "prop ~ period", random = c("(1 | herd)"),
  categorical = list(period = levels(cb$period), herd = levels(cb$herd)),
  emmeans_satterthwaite = emm_tab(e_cb),
  pairs_tukey = pair_tab(e_cb, "tukey"),
  pairs_bonferroni = pair_tab(e_cb, "bonferroni"),
  r2 = as.list(unlist(r2_nakagawa(m_cb))), icc = as.list(unlist(icc(m_cb)))
)

res$sleepstudy <- local({
  m <- lmer(Reaction ~ Days + (Days | Subject), sleepstudy)
  list(data = "sleepstudy.csv", formula = "Reaction ~ Days", random = c("(Days | Subject)"),
       r2 = as.list(unlist(r2_nakagawa(m))), icc = as.list(unlist(icc(m))))
})

writeLines(toJSON(res, digits = NA, auto_unbox = TRUE, pretty = TRUE), out)
