"""interlace: mixed-effects models in Python with lme4-grade answers."""

from .api import fit
from .result import CrossedLMEResult

__all__ = ["fit", "CrossedLMEResult", "__version__"]
__version__ = "0.1.0"
