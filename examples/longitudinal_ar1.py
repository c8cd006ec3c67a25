"""Longitudinal data with AR(1) residuals (nlme's corAR1) on the ovary data.

Run: python examples/longitudinal_ar1.py   (writes ovary_ar1.png)
"""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import interlace  # noqa: E402
from interlace import datasets  # noqa: E402

df = datasets.load("ovary")
formula = "follicles ~ sin2pi + cos2pi"
plain = interlace.fit(formula, data=df, groups="Mare")
ar1 = interlace.fit(formula, data=df, groups="Mare", correlation=interlace.AR1(time="visit", group="Mare"))
print(ar1.summary())
print(f"\nphi = {ar1.correlation_params['phi']:.3f}")
print(f"AIC without / with AR(1): {plain.aic:.2f} / {ar1.aic:.2f}")

# autocorrelation of the within-mare residuals of the model without AR(1)
lags = np.arange(1, 8)
acf = []
for lag in lags:
    pairs = []
    for _, idx in df.groupby("Mare", observed=True).indices.items():
        e = plain.resid[idx][np.argsort(df["visit"].to_numpy()[idx])]
        pairs.append(np.column_stack([e[:-lag], e[lag:]]))
    p = np.vstack(pairs)
    acf.append(np.corrcoef(p[:, 0], p[:, 1])[0, 1])
fig, ax = plt.subplots(figsize=(5, 3.5))
ax.bar(lags, acf, label="residual autocorrelation (no AR1)")
ax.plot(lags, ar1.correlation_params["phi"] ** lags, "o-", color="C1", label="fitted AR(1): phi^lag")
ax.set_xlabel("lag (visits)")
ax.legend(fontsize=7)
fig.tight_layout()
fig.savefig("ovary_ar1.png", dpi=110)
print("wrote ovary_ar1.png")
