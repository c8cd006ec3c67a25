"""Why a verb is not available on a fit: the iterative solver's missing quantities, and the
row-level data a fit from a lazy frame never collected. Plain functions with no dependency on
the result classes, so the inference modules and diagnostics can raise the same errors."""

from __future__ import annotations

__all__ = ["ITERATIVE_LACKS", "needs_rows_error", "refuse_iterative"]

# what a fit by solver="iterative" does not compute (docs/scalable.md), by what a verb needs
ITERATIVE_LACKS = {
    "likelihood": "the iterative solver computes no log-likelihood or REML criterion (its log-determinants "
                  "are never formed: llf is NaN), so there is nothing to compare or profile",
    "df": "the iterative solver computes no Satterthwaite or Kenward-Roger df (no Hessian of the "
          "criterion: its tests are Wald z with df = ∞, as in summary())",
    "refit": "it refits the model to simulated responses, which is implemented for the exact solver only",
    "simulate": "simulating responses is implemented on the exact solver's engine only",
    "condvar": "the iterative solver never factors Z'WZ, so the diagonal blocks of the q × q inverse "
               "behind Var(b | y) are not available",
}


def refuse_iterative(result, what: str, lacks: str, instead: str = "") -> None:
    """Raise a ValueError saying why ``what`` is not available when ``result`` is a fit by the
    iterative solver (nothing otherwise)."""
    if (getattr(result, "optimizer_info", None) or {}).get("solver") != "iterative":
        return
    raise ValueError(
        f"{what} is not available for a fit with solver='iterative': {ITERATIVE_LACKS[lacks]}. "
        f"{instead}To get it, refit with solver='exact' (on a subset of the data or a smaller model if "
        "the full one is too large for the exact solver)"
    )


def needs_rows_error(what: str) -> ValueError:
    """The error for what needs the fitted rows of a fit from a lazy frame (only its cross-products
    [Z X y]'W[Z X y] were collected)."""
    return ValueError(
        f"{what} needs the row-level data, but this model was fitted from a lazy frame: only its "
        "cross-products were collected, never its rows. Collect the lazy frame (e.g. "
        "lazy_frame.collect()) and fit the collected frame to get it"
    )
