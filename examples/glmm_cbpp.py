"""A binomial GLMM on cbpp (lme4's glmer example): estimates, odds ratios and a caterpillar plot.

Run: python examples/glmm_cbpp.py   (writes cbpp_herds.png)
"""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import interlace  # noqa: E402
from interlace import datasets  # noqa: E402

cbpp = datasets.load("cbpp")
cbpp["prop"] = cbpp["incidence"] / cbpp["size"]
m = interlace.glmer("prop ~ period", data=cbpp, family="binomial", groups="herd", weights="size")
print(m.summary())
ci = m.fe_conf_int()
print("\nodds ratios against period 1:")
print(np.exp(ci.assign(estimate=m.fe_params)).iloc[1:].round(3))

# herd effects on the log-odds scale with the period-1 incidence they imply
re = m.random_effects["herd"]["(Intercept)"].sort_values()
fig, axes = plt.subplots(1, 2, figsize=(10, 4))
axes[0].barh([str(h) for h in re.index], re.to_numpy())
axes[0].axvline(0, color="grey", lw=0.8)
axes[0].set_title("herd random effects (log-odds)")
axes[1].scatter(m.fittedvalues, cbpp["prop"], s=12 + cbpp["size"])
axes[1].plot([0, 0.5], [0, 0.5], color="grey", lw=0.8)
axes[1].set_xlabel("fitted incidence")
axes[1].set_ylabel("observed incidence")
axes[1].set_title("observed vs fitted (size = herd size)")
fig.tight_layout()
fig.savefig("cbpp_herds.png", dpi=110)
print("wrote cbpp_herds.png")
