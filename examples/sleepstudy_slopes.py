"""Random intercepts and slopes on sleepstudy: summary, profile intervals, caterpillar plot.

Run: python examples/sleepstudy_slopes.py   (writes sleepstudy_caterpillar.png, sleepstudy_fit.png)
"""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import interlace  # noqa: E402
from interlace import datasets, plots  # noqa: E402

df = datasets.load("sleepstudy")
r = interlace.fit("Reaction ~ Days", data=df, random=["(Days | Subject)"])
print(r.summary())
print(r.confint("profile").round(3))

plots.caterpillar(r, "Subject").savefig("sleepstudy_caterpillar.png", dpi=110)

# each subject's data with its own fitted line and the population line
fig, axes = plt.subplots(3, 6, figsize=(13, 7), sharex=True, sharey=True)
pop = r.predict(df, include_re=False)
for ax, (subject, rows) in zip(
    axes.ravel(), df.groupby("Subject", observed=True).groups.items(), strict=False
):
    sub = df.loc[rows]
    ax.plot(sub["Days"], sub["Reaction"], "o", ms=3)
    ax.plot(sub["Days"], r.fittedvalues[rows], "-", label="subject fit")
    ax.plot(sub["Days"], pop[rows], "--", color="grey", label="population")
    ax.set_title(str(subject), fontsize=8)
axes[0, 0].legend(fontsize=6)
fig.supxlabel("Days of sleep deprivation")
fig.supylabel("Reaction time (ms)")
fig.tight_layout()
fig.savefig("sleepstudy_fit.png", dpi=110)
print("wrote sleepstudy_caterpillar.png, sleepstudy_fit.png")
