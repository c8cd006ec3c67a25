"""Arguments of the entry points: a choice among named options, and the rule that an argument
with no meaning on the chosen backend is refused, never silently ignored."""

from __future__ import annotations

from .spec import BACKENDS

__all__ = ["choice", "default", "refuse_unused", "sampler_arguments", "REML_ONLY", "SAMPLER_ONLY"]

_REML_ONLY = {"method", "df_method", "optimizer", "theta0", "verbose", "nAGQ", "fast", "solver"}
REML_ONLY = frozenset(_REML_ONLY)  # the arguments meaningful on backend='reml' only (update())
_SAMPLER_ONLY = {"draws", "tune", "chains", "cores", "random_seed", "sampler", "priors", "marginalize",
                 "target_accept", "progressbar"}
SAMPLER_ONLY = frozenset(_SAMPLER_ONLY)  # ... and on backend='pymc' only


class _Default:
    """Marks a signature's default: equal to (and used as) the plain value, yet told apart from
    the same value passed by the caller, so ``fit(..., backend="pymc", method="REML")`` is refused
    like any other REML-only argument."""

    __slots__ = ()


class _DefaultStr(_Default, str):
    __slots__ = ()


class _DefaultInt(_Default, int):
    __slots__ = ()


class _DefaultFloat(_Default, float):
    __slots__ = ()


def default(value):
    """``value`` as a signature default (see :class:`_Default`); str, int or float."""
    kind = {str: _DefaultStr, int: _DefaultInt, float: _DefaultFloat}[type(value)]
    return kind(value)


def refuse_unused(backend: str, **given) -> None:
    """An argument that means nothing on ``backend`` is refused, never silently ignored.

    ``given`` maps each argument name to (value, default): an argument was left alone when its
    value is the signature's marked default (:func:`default`), or equals a None or bool default;
    anything else — the default's value passed explicitly included — was chosen by the caller.
    """
    for name, (value, dflt) in given.items():
        if isinstance(value, _Default) or ((dflt is None or isinstance(dflt, bool)) and value == dflt
                                           and type(value) is type(dflt)):
            continue
        if backend == "pymc" and name in _REML_ONLY:
            raise ValueError(
                f"{name}={value!r} has no meaning for backend='pymc': it samples the posterior, with no "
                "REML/ML optimisation or t-test degrees of freedom; drop it, or use backend='reml'"
            )
        if backend == "reml" and name in _SAMPLER_ONLY:
            raise ValueError(
                f"{name}={value!r} configures the PyMC sampler and has no meaning for backend='reml'; "
                "drop it, or pass backend='pymc'"
            )


def choice(name: str, value, allowed: tuple[str, ...], upper: bool = False) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be one of {list(allowed)}, got {value!r}")
    v = value.upper() if upper else value.lower().replace("_", "-")
    if v not in allowed:
        raise ValueError(f"{name} must be one of {list(allowed)}, got {value!r}")
    return v



def sampler_arguments(backend, **given) -> dict | None:
    """The PyMC sampler's arguments for backend='pymc' (None for 'reml', refusing any given)."""
    backend = choice("backend", backend, BACKENDS)
    defaults = {"draws": 1000, "tune": 1000, "chains": 4, "cores": None, "random_seed": None,
                "progressbar": True, "sampler": "nutpie", "priors": None, "target_accept": 0.8}
    refuse_unused(backend, **{k: (v, defaults[k]) for k, v in given.items() if k != "progressbar"})
    return given if backend == "pymc" else None
