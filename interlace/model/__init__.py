"""Model specification: formulas (lme4 bars and R's dialect), families and links, correlation
structures, the ModelSpec."""
