"""lme4 random-effects syntax: parse ``(expr | g)`` terms into plain :class:`RandomTerm` data.

Supported, exactly as lme4 reads them:

- ``(1 | g)``, ``(x | g)`` (intercept implied), ``(0 + x | g)``, ``(1 + x + z | g)``;
- factor slopes ``(0 + f | g)`` (one column per level);
- uncorrelated ``(x || g)`` = ``(1 | g) + (0 + x | g)``, split by formula term as lme4's
  ``expandDoubleVerts`` does;
- nesting ``(1 | a/b)`` = ``(1 | a) + (1 | a:b)``, interaction groups ``(1 | a:b)``.

The fixed part of a formula is left to formulaic; random terms written inside the formula
(``"y ~ x + (1 | g)"``) are pulled out here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from formulaic import Formula

__all__ = ["RandomTerm", "parse_random", "split_formula", "groups_to_terms", "model_terms"]

_NAME = re.compile(r"^[A-Za-z_.][A-Za-z0-9_.]*$|^`[^`]+`$")


@dataclass(frozen=True)
class RandomTerm:
    """One random-effects term: the columns ``expr`` varying by the levels of ``group``.

    ``factors`` are the data columns whose interaction forms the grouping factor;
    ``group`` is their ``:``-joined name (lme4's name for the term's group).
    """

    expr: str
    factors: tuple[str, ...]
    source: str

    @property
    def group(self) -> str:
        return ":".join(self.factors)


def _strip_outer_parens(s: str) -> str:
    s = s.strip()
    while s.startswith("(") and s.endswith(")") and _balanced(s[1:-1]):
        s = s[1:-1].strip()
    return s


def _balanced(s: str) -> bool:
    depth = 0
    for ch in s:
        depth += ch == "("
        depth -= ch == ")"
        if depth < 0:
            return False
    return depth == 0


def _top_level_bar(s: str) -> bool:
    """Is there a '|' outside parentheses (a random term written without them)?"""
    depth = 0
    for ch in s:
        depth += (ch == "(") - (ch == ")")
        if ch == "|" and depth == 0:
            return True
    return False


def _top_level_chunks(s: str) -> list[str]:
    """Split ``s`` on top-level ``+`` signs (outside parentheses)."""
    chunks, depth, cur = [], 0, []
    for ch in s:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "+" and depth == 0:
            chunks.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    chunks.append("".join(cur))
    return [c.strip() for c in chunks]


def _group_factors(group: str, source: str) -> list[tuple[str, ...]]:
    """``a/b/c`` -> [(a,), (a, b), (a, b, c)]; ``a:b`` -> [(a, b)]."""
    group = _strip_outer_parens(group)
    if not group:
        raise ValueError(f"random term {source!r} has no grouping factor after '|'")
    out: list[tuple[str, ...]] = []
    nest_parts = [p.strip() for p in group.split("/")]
    prefix: tuple[str, ...] = ()
    for part in nest_parts:
        names = tuple(_clean_name(n, source) for n in part.split(":"))
        prefix = prefix + names
        out.append(prefix)
    return out


def _clean_name(name: str, source: str) -> str:
    name = name.strip()
    if not name or not _NAME.match(name):
        raise ValueError(
            f"random term {source!r}: grouping factor {name!r} is not a column name; "
            "write groups as column names, e.g. (1 | subject), (1 | a/b) or (1 | a:b)"
        )
    return name.strip("`")


def _formula_terms(expr: str, source: str) -> list[str]:
    try:
        f = Formula(expr)
    except Exception as ex:  # formulaic raises its own exception types
        raise ValueError(f"random term {source!r}: cannot parse {expr!r}: {ex}") from ex
    return [str(t) for t in f]


def _parse_one(text: str) -> list[RandomTerm]:
    source = text.strip()
    body = _strip_outer_parens(source)
    if "||" in body:
        lhs, _, rhs = body.partition("||")
        double = True
    elif "|" in body:
        lhs, _, rhs = body.partition("|")
        double = False
    else:
        raise ValueError(
            f"random term {source!r} has no '|': write it as lme4 does, e.g. '(1 | group)' "
            "or '(1 + x | group)'"
        )
    if "|" in rhs:
        raise ValueError(f"random term {source!r} has more than one '|'")
    lhs = lhs.strip()
    if not lhs:
        raise ValueError(f"random term {source!r} has nothing before '|': use '(1 | g)'")
    groups = _group_factors(rhs, source)
    exprs = [lhs]
    if double:
        terms = _formula_terms(lhs, source)
        exprs = ["1" if t == "1" else f"0 + {t}" for t in terms]
        if not exprs:
            raise ValueError(f"random term {source!r} has no columns")
    return [RandomTerm(expr=e, factors=g, source=source) for g in groups for e in exprs]


def parse_random(specs: str | list[str] | tuple[str, ...] | None) -> list[RandomTerm]:
    """Parse lme4 random-effects specifications into a flat list of :class:`RandomTerm`.

    Each string may hold one term ``"(1 + x | g)"`` or several joined by ``+``.
    """
    if specs is None:
        return []
    if isinstance(specs, str):
        specs = [specs]
    if not isinstance(specs, list | tuple):
        raise TypeError(
            f"random= must be a list of strings like ['(1 + x | g)'], got {type(specs).__name__}"
        )
    out: list[RandomTerm] = []
    for spec in specs:
        if not isinstance(spec, str):
            raise TypeError(f"random= entries must be strings, got {spec!r}")
        if not _balanced(spec):
            raise ValueError(f"random term {spec!r} has unbalanced parentheses")
        chunks = [c for c in _top_level_chunks(spec) if c]
        if not chunks:
            raise ValueError("random= contains an empty term")
        for chunk in chunks:
            out.extend(_parse_one(chunk))
    return out


def split_formula(formula: str) -> tuple[str, list[str]]:
    """Split ``"y ~ x + (1 | g)"`` into the fixed formula ``"y ~ x"`` and ``["(1 | g)"]``."""
    if not isinstance(formula, str):
        raise TypeError(f"formula must be a string like 'y ~ x', got {type(formula).__name__}")
    if "~" not in formula:
        raise ValueError(f"formula {formula!r} has no '~': write it as 'response ~ predictors'")
    lhs, _, rhs = formula.partition("~")
    if not lhs.strip():
        raise ValueError(f"formula {formula!r} has no response before '~'")
    if not _balanced(rhs):
        raise ValueError(f"formula {formula!r} has unbalanced parentheses")
    fixed, random = [], []
    for chunk in _top_level_chunks(rhs):
        if "|" in chunk and chunk.startswith("(") and chunk.endswith(")") and _balanced(chunk[1:-1]):
            random.append(chunk)
        elif _top_level_bar(chunk):
            raise ValueError(
                f"formula {formula!r}: the random-effects term {chunk!r} needs parentheses, as in "
                f"lme4: write '({chunk})'"
            )
        elif chunk:
            fixed.append(chunk)
    rhs_fixed = " + ".join(fixed) if fixed else "1"
    return f"{lhs.strip()} ~ {rhs_fixed}", random


def groups_to_terms(groups: str | list[str] | tuple[str, ...] | None) -> list[str]:
    """``groups="g"`` / ``groups=["a", "b"]`` -> ``["(1 | g)"]`` / ``["(1 | a)", "(1 | b)"]``."""
    if groups is None:
        return []
    if isinstance(groups, str):
        groups = [groups]
    if not isinstance(groups, list | tuple):
        raise TypeError(f"groups= must be a column name or a list of them, got {groups!r}")
    out = []
    for g in groups:
        if not isinstance(g, str) or not g.strip():
            raise TypeError(f"groups= entries must be column names, got {g!r}")
        out.append(f"(1 | {g})")
    return out


def model_terms(formula: str, groups=None, random=None) -> tuple[str, list[RandomTerm]]:
    """The one place ``groups=``, ``random=`` and bars written in the formula become terms.

    Returns the fixed part (``"y ~ x"``) and the random terms in the order written: ``groups``
    first (``(1 | g)`` each), then ``random``, then the formula's own ``(… | …)`` terms.
    Raises ``TypeError`` for ``random=`` that is not a string or a list of strings.
    """
    fixed, inline = split_formula(formula)
    if random is not None and not isinstance(random, str | list | tuple):
        raise TypeError(f"random= must be a list of strings like ['(1 + x | g)'], got {random!r}")
    specs = [random] if isinstance(random, str) else list(random or [])
    terms = parse_random(groups_to_terms(groups) + specs + inline)
    _refuse_repeats(terms, groups)
    return fixed, terms


def _refuse_repeats(terms: list[RandomTerm], groups) -> None:
    """A ValueError for the same term given twice (same columns, same grouping factor), however
    spelled: ``(Days | g)`` is ``(1 + Days | g)``, and ``groups="g"`` adds ``(1 | g)``."""
    seen: dict[tuple, RandomTerm] = {}
    first_intercept = frozenset(_formula_terms("1", "(1 | g)"))
    for t in terms:
        key = (t.factors, frozenset(_formula_terms(t.expr, t.source)))
        if key in seen:
            first = seen[key]
            where = (f"{first.source!r} and {t.source!r}" if first.source != t.source
                     else f"{t.source!r} twice")
            named = [groups] if isinstance(groups, str) else list(groups or [])
            hint = (f" (groups={t.group!r} already adds '(1 | {t.group})')"
                    if t.group in named and key[1] == first_intercept else "")
            raise ValueError(
                f"the random-effects term on {t.group!r} with columns {t.expr!r} is given twice: "
                f"{where}{hint}. lme4 would fit the copies as separate terms with separate variances, "
                "which is never intended and not identifiable apart; give the term once"
            )
        seen[key] = t
