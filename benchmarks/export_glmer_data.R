# Export lme4's VerbAgg and grouseticks data for the glmer benchmark (benchmarks/glmer.py).
# Usage: Rscript benchmarks/export_glmer_data.R [OUTDIR]   (default benchmarks/data)
suppressPackageStartupMessages(library(lme4))
out <- commandArgs(TRUE)[1]
if (is.na(out)) out <- "benchmarks/data"
dir.create(out, recursive = TRUE, showWarnings = FALSE)
v <- VerbAgg
verbagg <- data.frame(r2 = as.integer(v$r2 == "Y"), Anger = v$Anger, Gender = v$Gender, btype = v$btype,
                      situ = v$situ, id = v$id, item = v$item)
write.csv(verbagg, file.path(out, "verbagg.csv"), row.names = FALSE, quote = FALSE)
g <- grouseticks
write.csv(data.frame(TICKS = g$TICKS, YEAR = g$YEAR, cHEIGHT = g$cHEIGHT, BROOD = g$BROOD,
                     LOCATION = g$LOCATION, INDEX = g$INDEX),
          file.path(out, "grouseticks.csv"), row.names = FALSE, quote = FALSE)
