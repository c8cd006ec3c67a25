"""The same model two ways: REML and PyMC (NUTS) on sleepstudy, side by side with a forest plot.

Run: python examples/reml_vs_pymc.py   (writes reml_vs_pymc.png)
"""

import matplotlib

matplotlib.use("Agg")

import interlace  # noqa: E402
from interlace import datasets  # noqa: E402

df = datasets.load("sleepstudy")
model = dict(formula="Reaction ~ Days", data=df, random=["(Days | Subject)"])
reml = interlace.fit(**model)
bayes = interlace.fit(
    **model, backend="pymc", chains=2, draws=500, tune=500, random_seed=1, progressbar=False
)
table = interlace.compare(reml, bayes)
print(table.round(3).to_string())
fig = interlace.plot_compare(reml, bayes)
fig.savefig("reml_vs_pymc.png", dpi=110)
print("wrote reml_vs_pymc.png")
