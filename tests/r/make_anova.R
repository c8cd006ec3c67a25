# Reference numbers for F-test tables and model reduction (issue 21, items 1-2): lmerTest's
# anova (type I/II/III, Satterthwaite and Kenward-Roger), contest1D/contestMD, ranova, drop1 and
# step; car::Anova (type II/III Wald chi-square) and linearHypothesis for a binomial glmer.
# Every model is fitted with treatment contrasts and again with contr.sum.
# Usage: Rscript tests/r/make_anova.R tests/data/anova
suppressPackageStartupMessages({ library(lmerTest); library(car); library(jsonlite) })
out <- commandArgs(TRUE)[1]
dir.create(out, recursive = TRUE, showWarnings = FALSE)
ctrl <- lmerControl(optimizer = "bobyqa", optCtrl = list(rhoend = 1e-10))
gctrl <- glmerControl(optimizer = "bobyqa", optCtrl = list(rhoend = 1e-10), tolPwrss = 1e-12)
num <- function(x) unname(as.numeric(x))

# ---- simulated crossed design: 24 subjects x 16 items, about 15% of the rows dropped ---------
set.seed(2021)
ns <- 24; ni <- 16
d <- expand.grid(subj = sprintf("s%02d", 1:ns), item = sprintf("i%02d", 1:ni), stringsAsFactors = FALSE)
d$A <- ifelse(as.integer(substr(d$item, 2, 3)) %% 2 == 0, "a1", "a2")        # between items
d$B <- sample(c("b1", "b2", "b3"), nrow(d), replace = TRUE)                    # within both
d$x <- round(rnorm(nrow(d)), 3)
d$z <- round(runif(nrow(d), -1, 1), 3)                                          # no effect
us <- rnorm(ns, sd = 1.0); usx <- rnorm(ns, sd = 0.35); ui <- rnorm(ni, sd = 0.7)
si <- match(d$subj, sprintf("s%02d", 1:ns)); ii <- match(d$item, sprintf("i%02d", 1:ni))
eff_b <- c(b1 = 0, b2 = 0.5, b3 = 0.35)
eff_ab <- ifelse(d$A == "a2" & d$B == "b3", -0.6, 0) + ifelse(d$A == "a2" & d$B == "b2", 0.2, 0)
eta <- 10 + 0.4 * (d$A == "a2") + eff_b[d$B] + eff_ab + (0.3 + usx[si]) * d$x + us[si] + ui[ii]
d$y <- round(eta + rnorm(nrow(d), sd = 1.1), 4)
lp <- -0.3 + 0.5 * (d$A == "a2") + c(b1 = 0, b2 = 0.6, b3 = -0.3)[d$B] + 0.4 * d$x + us[si] * 0.6 + ui[ii] * 0.6
d$yb <- rbinom(nrow(d), 1, plogis(lp))
d <- d[sort(sample(nrow(d), round(0.85 * nrow(d)))), ]
write.csv(d, file.path(out, "crossed.csv"), row.names = FALSE)
d$subj <- factor(d$subj); d$item <- factor(d$item); d$A <- factor(d$A); d$B <- factor(d$B)

tab <- function(a) {
  a <- as.data.frame(a)
  list(rows = I(rownames(a)), columns = I(colnames(a)), values = lapply(a, function(v) I(num(v))))
}
fit_info <- function(m) list(loglik = num(logLik(m)), fixef = num(fixef(m)), fixef_names = names(fixef(m)),
                             theta = num(getME(m, "theta")))

cases <- list()
coding <- list(treatment = c("contr.treatment", "contr.poly"), sum = c("contr.sum", "contr.poly"))
# interlace spells sum coding per factor: C(f, contr.sum)
py_formula <- function(f, cod) if (cod == "sum") gsub("\\b([AB])\\b", "C(\\1, contr.sum)", f, perl = TRUE) else f

lmm_models <- list(
  ab_x = list(fixed = "y ~ A * B + x", random = "(1 + x | subj) + (1 | item)", reml = TRUE),
  ax_b = list(fixed = "y ~ A * x + B", random = "(1 | subj) + (1 | item)", reml = TRUE),
  ab_x_ml = list(fixed = "y ~ A * B + x", random = "(1 | subj) + (1 | item)", reml = FALSE),
  # crossed random slopes, one of them a factor slope
  ab_slopes = list(fixed = "y ~ A * B + x", random = "(1 + A | subj) + (1 + x | item)", reml = TRUE)
)
for (cod in names(coding)) {
  options(contrasts = coding[[cod]])
  for (nm in names(lmm_models)) {
    spec <- lmm_models[[nm]]
    form <- as.formula(paste(spec$fixed, "+", spec$random))
    m <- lmer(form, data = d, REML = spec$reml, control = ctrl)
    ddfs <- if (spec$reml) c("Satterthwaite", "Kenward-Roger") else "Satterthwaite"
    anovas <- list()
    for (ddf in ddfs) for (type in c("I", "II", "III"))
      anovas[[paste(type, ddf)]] <- tab(anova(m, type = type, ddf = ddf))
    drops <- lapply(setNames(ddfs, ddfs), function(ddf) tab(drop1(m, ddf = ddf)))
    cases[[paste(nm, cod, sep = "_")]] <- c(
      list(name = paste(nm, cod, sep = "_"), coding = cod, r_formula = paste(deparse(form), collapse = ""),
           formula = paste(py_formula(spec$fixed, cod), "+", spec$random), reml = spec$reml,
           anova = anovas, drop1 = drops),
      fit_info(m))
  }
}
options(contrasts = coding$treatment)

# ---- other term structures: a slope without its main effect, no intercept, two factor-by-
# covariate interactions, a polynomial (a matrix variable: not a covariate for containment) ------
structures <- list()
for (f in c("y ~ A + A:x + B", "y ~ 0 + A + x", "y ~ B * z + A * x", "y ~ poly(x, 2) * A", "y ~ x + I(x^2) + B")) {
  m <- lmer(as.formula(paste(f, "+ (1 | subj) + (1 | item)")), data = d, control = ctrl)
  structures[[length(structures) + 1]] <- list(
    formula = paste(f, "+ (1 | subj) + (1 | item)"), loglik = num(logLik(m)),
    anova = lapply(setNames(c("I", "II", "III"), c("I", "II", "III")), function(t) tab(anova(m, type = t))))
}

# ---- contrasts: contest1D / contestMD on ab_x (treatment coding) ---------------------------
m <- lmer(y ~ A * B + x + (1 + x | subj) + (1 | item), data = d, control = ctrl)
p <- length(fixef(m))
L1 <- c(0, 0, 1, -1, 0, 0, 0)                        # b2 - b3 at a1
L2 <- rbind(c(0, 0, 1, 0, 0, 0, 0), c(0, 0, 0, 1, 0, 0, 0))
L3 <- rbind(c(0, 0, 0, 0, 0, 1, 0), c(0, 0, 0, 0, 0, 0, 1), c(0, 0, 0, 0, 0, 1, 1))  # rank 2
contests <- list()
for (ddf in c("Satterthwaite", "Kenward-Roger")) {
  contests[[length(contests) + 1]] <- list(L = L1, rhs = 0, ddf = ddf, kind = "t",
                                           table = tab(contest1D(m, L1, ddf = ddf, confint = TRUE)))
  contests[[length(contests) + 1]] <- list(L = L1, rhs = 0.2, ddf = ddf, kind = "t",
                                           table = tab(contest1D(m, L1, rhs = 0.2, ddf = ddf, confint = TRUE)))
  contests[[length(contests) + 1]] <- list(L = L2, rhs = 0, ddf = ddf, kind = "F", table = tab(contestMD(m, L2, ddf = ddf)))
  contests[[length(contests) + 1]] <- list(L = L3, rhs = 0, ddf = ddf, kind = "F", table = tab(contestMD(m, L3, ddf = ddf)))
}
contests[[length(contests) + 1]] <- list(L = L2, rhs = c(0.3, 0.1), ddf = "Satterthwaite", kind = "F",
                                         table = tab(contestMD(m, L2, rhs = c(0.3, 0.1))))

# ---- ranova -------------------------------------------------------------------------------------
ran <- list()
add_ranova <- function(name, form, reml = TRUE, reduce = TRUE) {
  mm <- lmer(form, data = d, REML = reml, control = ctrl)
  ran[[name]] <<- list(name = name, formula = paste(deparse(form), collapse = ""), reml = reml,
                       reduce_terms = reduce, table = tab(ranova(mm, reduce.terms = reduce)))
}
add_ranova("slope_and_item", y ~ A * B + x + (1 + x | subj) + (1 | item))
add_ranova("slope_and_item_complete", y ~ A * B + x + (1 + x | subj) + (1 | item), reduce = FALSE)
add_ranova("slope_and_item_ml", y ~ A * B + x + (1 + x | subj) + (1 | item), reml = FALSE)
add_ranova("crossed_slopes", y ~ A * B + x + (1 + A | subj) + (1 + x | item))
add_ranova("double_bar", y ~ A + B + x + (x || subj) + (1 | item))
add_ranova("single_term_to_lm", y ~ A * B + x + (1 | subj))
add_ranova("single_term_to_lm_ml", y ~ A * B + x + (1 | subj), reml = FALSE)

# ---- step ---------------------------------------------------------------------------------------
ms <- lmer(y ~ A * B + x + z + (1 + z | subj) + (1 | item), data = d, control = ctrl)
st <- step(ms)
step_ref <- list(formula = "y ~ A * B + x + z + (1 + z | subj) + (1 | item)",
                 random = tab(st$random), fixed = tab(st$fixed),
                 final = paste(deparse(formula(get_model(st))), collapse = ""),
                 final_fit = fit_info(get_model(st)))

# ---- GLMM: car::Anova Wald chi-square, linearHypothesis ------------------------------------------
glmms <- list()
for (cod in names(coding)) {
  options(contrasts = coding[[cod]])
  g <- glmer(yb ~ A * B + x + (1 | subj) + (1 | item), data = d, family = binomial, control = gctrl)
  glmms[[cod]] <- c(list(coding = cod, formula = paste(py_formula("yb ~ A * B + x", cod), "+ (1 | subj) + (1 | item)"),
                         type2 = tab(Anova(g, type = 2)), type3 = tab(Anova(g, type = 3))),
                    fit_info(g), list(se = num(sqrt(diag(as.matrix(vcov(g))))), vcov = unname(as.matrix(vcov(g)))))
}
options(contrasts = coding$treatment)
g <- glmer(yb ~ A * B + x + (1 | subj) + (1 | item), data = d, family = binomial, control = gctrl)
lh <- linearHypothesis(g, L2)
glmm_contest <- list(L = L2, chisq = num(lh$Chisq[2]), df = num(lh$Df[2]), p = num(lh[["Pr(>Chisq)"]][2]))

ref <- list(data = "crossed.csv", lmm = unname(cases), structures = structures, contest = contests, ranova = unname(ran), step = step_ref,
            glmm = unname(glmms), glmm_contest = glmm_contest,
            versions = list(lme4 = as.character(packageVersion("lme4")),
                            lmerTest = as.character(packageVersion("lmerTest")),
                            pbkrtest = as.character(packageVersion("pbkrtest")),
                            car = as.character(packageVersion("car"))))
writeLines(toJSON(ref, digits = NA, auto_unbox = TRUE, pretty = TRUE, na = "null"), file.path(out, "anova.json"))
print(st)
