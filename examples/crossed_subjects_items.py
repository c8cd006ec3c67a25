"""Crossed subjects × items with correlated random slopes; Satterthwaite vs Kenward-Roger.

Run: python examples/crossed_subjects_items.py   (writes stroop_diagnostics.png)
"""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import interlace  # noqa: E402
from interlace import datasets, plots  # noqa: E402

df = datasets.load("stroop")
random = ["(1 + condition | subject)", "(1 + condition | item)"]
sat = interlace.fit("rt ~ condition", data=df, random=random)
kr = interlace.fit("rt ~ condition", data=df, random=random, df_method="kenward-roger")
print(sat.summary())
print("\nSatterthwaite vs Kenward-Roger:")
print(
    sat.to_frame()
    .merge(kr.to_frame(), on="term", suffixes=("_sat", "_kr"))[
        ["term", "estimate_sat", "std_error_sat", "df_sat", "std_error_kr", "df_kr", "p_value_kr"]
    ]
    .round(4)
)

fig, axes = plt.subplots(1, 2, figsize=(10, 4))
plots.residuals_vs_fitted(sat, ax=axes[0])
plots.qq(sat, ax=axes[1])
fig.tight_layout()
fig.savefig("stroop_diagnostics.png", dpi=110)
print("wrote stroop_diagnostics.png")
