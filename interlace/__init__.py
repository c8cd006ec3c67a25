"""interlace: mixed-effects models in Python with lme4-grade answers."""

from .api import clmm, coxme, fit, glmer
from .backends.pymc.priors import Prior
from .compare import compare, plot_compare
from .diagnostics import allfit
from .inference.bootstrap import bootstrap
from .inference.contest import contest
from .inference.emmeans import contrast, emmeans
from .inference.ftable import drop1
from .inference.lrt import anova
from .inference.power import power
from .inference.ranova import ranova, step
from .model.correlation import AR1, CompoundSymmetry
from .results.bayes_compare import loo_compare
from .results.lmm import CrossedLMEResult

__all__ = [
    "fit",
    "glmer",
    "clmm",
    "coxme",
    "anova",
    "loo_compare",
    "ranova",
    "drop1",
    "step",
    "contest",
    "emmeans",
    "contrast",
    "bootstrap",
    "power",
    "allfit",
    "AR1",
    "CompoundSymmetry",
    "CrossedLMEResult",
    "compare",
    "plot_compare",
    "Prior",
    "__version__",
]
__version__ = "0.1.0"
