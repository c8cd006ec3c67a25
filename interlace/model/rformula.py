"""R's formula dialect: parse the fixed part as R does and translate it for formulaic.

Users write formulas as they would for ``lm``/``lmer``: ``y ~ x + I(x^2) + factor(g) +
offset(log(n))``, ``cbind(s, f) ~ x``, ``y ~ .``. formulaic evaluates the inside of ``I()`` and
of function calls as *Python*, where ``^`` is bitwise XOR and ``factor`` is unknown, so passing R
text through would silently give other numbers. This module parses the text with R's grammar
(operator precedence from R's ``?Syntax``) into a small tree and writes it back out:

- formula operators keep their R meaning (``+ - * / : ^`` and ``%in%``, which is ``:``);
- every expression that R *evaluates* (call arguments, ``I()``) is written as Python with R's
  arithmetic (``^`` → power, ``%%`` → ``%``, ``%/%`` → ``//``, ``!`` → logical not, ``TRUE``);
- calls must name a function of :data:`interlace.model.rfunctions.R_FUNCTIONS` (R's ``factor``,
  ``as.numeric``, ``log(x, base)``, ``poly``, ``ns``, ``bs``, ``scale``, ``C`` …); anything
  else is refused with a message naming it — never evaluated with another meaning;
- ``offset(expr)`` terms are taken out of the model matrix and summed into the offset,
  ``cbind(successes, failures)`` on the left is a binomial response, ``.`` expands to the data
  columns not used elsewhere.

Coefficient labels are given back in R's spelling (``I(Days^2)``, not the Python text).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from formulaic.parser.algos.sanitize_tokens import sanitize_python_code

from .rfunctions import FORMULAIC_PASSTHROUGH, R_CONSTANTS, R_FUNCTIONS

__all__ = ["FormulaError", "FixedFormula", "parse_fixed", "translate_expr", "r_labels"]


class FormulaError(ValueError):
    """A formula that cannot be read as R reads it, or asks for something not supported."""


# --------------------------------------------------------------------------------- tokens
_TOKEN = re.compile(
    r"""\s*(?:
      (?P<num>0[xX][0-9a-fA-F]+L?|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?L?)
    | (?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
    | (?P<bq>`[^`]+`)
    | (?P<name>(?:[A-Za-z]|\.(?![0-9]))[A-Za-z0-9._]*|\.)
    | (?P<op>%[^%]*%|<=|>=|==|!=|&&|\|\||<-|->|\*\*|[-+*/^:~()\[\],=!&|<>$@])
    )""",
    re.VERBOSE,
)


def _tokens(text: str, where: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise FormulaError(f"{where}: cannot read {text[pos:pos + 12]!r} in {text!r}")
        pos = m.end()
        kind = m.lastgroup
        tok = m.group(kind)
        if kind == "bq":
            out.append(("name", tok[1:-1]))
        elif kind == "op" and tok == "**":
            out.append(("op", "^"))  # R reads ** as ^
        else:
            out.append((kind, tok))
    return out


# --------------------------------------------------------------------------------- parser
# binding powers from R's ?Syntax (higher binds tighter)
_BINARY = {
    "~": 1, "|": 3, "||": 3, "&": 4, "&&": 4,
    "==": 6, "!=": 6, "<": 6, ">": 6, "<=": 6, ">=": 6,
    "+": 7, "-": 7, "*": 8, "/": 8, ":": 10, "^": 12,
}
_UNARY = {"-": 11, "+": 11, "!": 5, "~": 1}


@dataclass(frozen=True)
class Node:
    """A parsed R expression: kind is num, str, name, call, bin, un or paren."""

    kind: str
    value: str = ""
    args: tuple = ()
    kwargs: tuple = ()  # (name, Node) pairs, in call order with args interleaved by `order`
    order: tuple = ()  # for calls: ("a", i) or ("k", i) — R's argument order


class _Parser:
    def __init__(self, toks: list[tuple[str, str]], text: str, where: str):
        self.toks, self.i, self.text, self.where = toks, 0, text, where

    def peek(self):
        return self.toks[self.i] if self.i < len(self.toks) else ("end", "")

    def take(self):
        tok = self.peek()
        self.i += 1
        return tok

    def fail(self, msg: str):
        raise FormulaError(f"{self.where}: {msg} in {self.text!r}")

    def expect(self, op: str):
        kind, tok = self.take()
        if kind != "op" or tok != op:
            self.fail(f"expected {op!r}" + (f" before {tok!r}" if tok else " at the end"))

    def expr(self, rbp: int = 0) -> Node:
        left = self.prefix()
        while True:
            kind, tok = self.peek()
            if kind != "op":
                if kind == "end":
                    return left
                self.fail(f"unexpected {tok!r} (a missing operator?)")
            if tok.startswith("%"):
                bp = 9
            elif tok in _BINARY:
                bp = _BINARY[tok]
            elif tok in ("[", "$", "@"):
                self.fail(f"indexing with {tok!r} is not supported; make the column first")
            elif tok in ("<-", "->", "="):
                self.fail(f"assignment {tok!r} is not allowed")
            else:
                return left
            if bp <= rbp and not (tok == "^" and bp == rbp):  # ^ is right-associative
                return left
            self.take()
            right = self.expr(bp - 1 if tok == "^" else bp)
            left = Node("bin", tok, (left, right))

    def prefix(self) -> Node:
        kind, tok = self.take()
        if kind == "num":
            return Node("num", tok)
        if kind == "str":
            return Node("str", tok)
        if kind == "name":
            if self.peek() == ("op", "("):
                return self.call(tok)
            return Node("name", tok)
        if kind == "op" and tok == "(":
            inner = self.expr()
            self.expect(")")
            return Node("paren", args=(inner,))
        if kind == "op" and tok in _UNARY:
            return Node("un", tok, (self.expr(_UNARY[tok]),))
        if kind == "end":
            self.fail("the expression ends too early")
        self.fail(f"unexpected {tok!r}")
        raise AssertionError  # unreachable

    def call(self, fname: str) -> Node:
        self.expect("(")
        args, kwargs, order = [], [], []
        if self.peek() == ("op", ")"):
            self.take()
            return Node("call", fname)
        while True:
            kind, tok = self.peek()
            nxt = self.toks[self.i + 1] if self.i + 1 < len(self.toks) else ("end", "")
            if kind in ("name", "str") and nxt == ("op", "="):
                self.take()
                self.take()
                kwargs.append((tok.strip("'\""), self.expr()))
                order.append(("k", len(kwargs) - 1))
            else:
                args.append(self.expr())
                order.append(("a", len(args) - 1))
            kind, tok = self.take()
            if (kind, tok) == ("op", ")"):
                break
            if (kind, tok) != ("op", ","):
                self.fail(f"expected ',' or ')' in the call to {fname}()")
        return Node("call", fname, tuple(args), tuple(kwargs), tuple(order))


def parse(text: str, where: str = "formula") -> Node:
    """Parse one R expression (a formula side or a whole formula) into a :class:`Node`."""
    p = _Parser(_tokens(text, where), text, where)
    node = p.expr()
    if p.i < len(p.toks):
        p.fail(f"unexpected {p.peek()[1]!r}")
    return node


# --------------------------------------------------------------------------------- R text
def deparse(node: Node) -> str:
    """R's own spelling of a node (``deparse``: no spaces around ``^ : / %% %/%``, spaces elsewhere)."""
    k = node.kind
    if k in ("num", "str"):
        return node.value
    if k == "name":
        return node.value if re.match(r"^(?:[A-Za-z]|\.(?![0-9]))[A-Za-z0-9._]*$|^\.$", node.value) \
            else f"`{node.value}`"
    if k == "paren":
        return f"({deparse(node.args[0])})"
    if k == "un":
        return f"{node.value}{deparse(node.args[0])}"
    if k == "bin":
        op = node.value
        tight = op in ("^", ":", "/", "%%", "%/%")
        sep = op if tight else f" {op} "
        return f"{deparse(node.args[0])}{sep}{deparse(node.args[1])}"
    parts = [deparse(node.args[i]) if t == "a" else f"{node.kwargs[i][0]} = {deparse(node.kwargs[i][1])}"
             for t, i in node.order]
    return f"{node.value}({', '.join(parts)})"


def names_in(node: Node) -> set[str]:
    """Variable names a node reads (function names excluded)."""
    if node.kind == "name":
        return {node.value}
    out: set[str] = set()
    for a in node.args:
        out |= names_in(a)
    for _, a in node.kwargs:
        out |= names_in(a)
    return out


# ------------------------------------------------------------------ R expression -> Python
_PY_BINARY = {"+": "+", "-": "-", "*": "*", "/": "/", "==": "==", "!=": "!=", "<": "<", ">": ">",
              "<=": "<=", ">=": ">=", "&": "&", "&&": "&", "|": "|", "||": "|", "%%": "%", "%/%": "//"}


_SPECIALS = {
    "offset": "offset() can only be added to the fixed part of the formula ('y ~ x + offset(log(n))')",
    "cbind": "cbind(successes, failures) can only be the response of glmer(..., family='binomial')",
    "strata": "strata() belongs in coxme formulas ('Surv(time, status) ~ x + strata(s) + (1 | g)')",
    "Surv": "Surv(time, status) is the response of coxme formulas",
}


def _py_name(name: str) -> str:
    return name if re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", name) else f"`{name}`"


@dataclass
class _Ctx:
    columns: set[str] | None
    where: str
    labels: dict[str, str] = field(default_factory=dict)


def _py(node: Node, ctx: _Ctx) -> str:
    """Python text computing ``node`` with R's meaning (evaluated by formulaic with R_FUNCTIONS)."""
    k = node.kind
    if k == "num":
        v = node.value.rstrip("L")
        return v
    if k == "str":
        return repr(node.value[1:-1])
    if k == "name":
        name = node.value
        if ctx.columns is not None and name in ctx.columns:
            return _py_name(name)
        if name in R_CONSTANTS:
            return R_CONSTANTS[name]
        if name == ".":
            raise FormulaError(f"{ctx.where}: '.' can only stand for columns at the top of a formula")
        return _py_name(name)
    if k == "paren":
        return f"({_py(node.args[0], ctx)})"
    if k == "un":
        inner = _py(node.args[0], ctx)
        if node.value == "!":
            return f"r_not({inner})"
        if node.value == "~":
            raise FormulaError(f"{ctx.where}: a formula '~' cannot stand inside an expression")
        return f"({node.value}{inner})"
    if k == "bin":
        op, (a, b) = node.value, node.args
        pa, pb = _py(a, ctx), _py(b, ctx)
        if op == "^":
            return f"r_pow({pa}, {pb})"
        if op == "%in%":
            return f"r_in({pa}, {pb})"
        if op == ":":
            raise FormulaError(
                f"{ctx.where}: the sequence operator ':' in {deparse(node)!r} is not supported inside an "
                "expression (at the top of a formula ':' is an interaction)"
            )
        if op == "~":
            raise FormulaError(f"{ctx.where}: a formula '~' cannot stand inside {deparse(node)!r}")
        if op not in _PY_BINARY:
            raise FormulaError(f"{ctx.where}: the operator {op!r} in {deparse(node)!r} is not supported")
        return f"({pa} {_PY_BINARY[op]} {pb})"
    return _py_call(node, ctx)


def _py_call(node: Node, ctx: _Ctx) -> str:
    fname = node.value
    if fname in _SPECIALS:
        raise FormulaError(f"{ctx.where}: {deparse(node)!r}: {_SPECIALS[fname]}")
    if fname.startswith(("np.", "numpy.")):  # R's grammar, R's functions: numpy is not evaluated
        r_name = fname.split(".", 1)[1]
        text = deparse(node)
        hint = f"write {text[len(fname) - len(r_name):]}" if r_name in R_FUNCTIONS else \
            "compute the column before fitting"
        raise FormulaError(
            f"{ctx.where}: {fname}() in {text!r} is numpy, and formulas are read as R reads "
            f"them (docs/coming-from-r.md): {hint}"
        )
    if fname in FORMULAIC_PASSTHROUGH:
        py_name = fname
        keymap: dict[str, str] = {}
    elif fname in R_FUNCTIONS:
        py_name, keymap = R_FUNCTIONS[fname]
    else:
        raise FormulaError(
            f"{ctx.where}: the function {fname}() in {deparse(node)!r} is not supported; supported R "
            f"functions: {', '.join(sorted(R_FUNCTIONS))} (or compute the column before fitting)"
        )
    parts = []
    for t, i in node.order:
        if t == "a":
            parts.append(_py(node.args[i], ctx))
        else:
            key, val = node.kwargs[i]
            if key not in keymap and keymap:
                raise FormulaError(
                    f"{ctx.where}: {fname}() has no argument {key!r} here (in {deparse(node)!r}); "
                    f"supported: {', '.join(sorted(keymap))}"
                )
            parts.append(f"{keymap.get(key, key.replace('.', '_'))}={_py(val, ctx)}")
    text = f"{py_name}({', '.join(parts)})"
    return text


def translate_expr(text: str, where: str = "formula", columns: list[str] | None = None) -> str:
    """One R expression (such as a call argument) as Python text with R's meaning."""
    return _py(parse(text, where), _Ctx(None if columns is None else set(columns), where))


# ----------------------------------------------------------------------- formula sides
_FORMULA_OPS = {"+", "-", "*", "/", ":", "^", "%in%"}


def _term(node: Node, ctx: _Ctx, offsets: list[tuple[str, str]], dot: list[str] | None) -> str | None:
    """Formulaic text of the right-hand side; ``offset()`` terms go to ``offsets``."""
    k = node.kind
    if k == "bin" and node.value == "^":
        if node.args[1].kind != "num":
            raise FormulaError(f"{ctx.where}: the power in {deparse(node)!r} must be a whole number")
        a = _term(node.args[0], ctx, offsets, dot)
        if a is None:
            raise FormulaError(f"{ctx.where}: offset() can only be added ('+ offset(...)')")
        return f"({a}) ** {node.args[1].value.rstrip('L')}"
    if k == "bin" and node.value in _FORMULA_OPS:
        a = _term(node.args[0], ctx, offsets, dot)
        b = _term(node.args[1], ctx, offsets, dot)
        op = node.value
        if a is None or b is None:
            if op == "+":
                return a if b is None else b
            raise FormulaError(f"{ctx.where}: offset() can only be added ('+ offset(...)')")
        if op == "^":
            if node.args[1].kind != "num":
                raise FormulaError(f"{ctx.where}: the power in {deparse(node)!r} must be a whole number")
            return f"({a}) ** {node.args[1].value.rstrip('L')}"
        if op == "%in%":
            op = ":"
        return f"{a} {op} {b}"
    if k == "un" and node.value in ("-", "+"):
        inner = _term(node.args[0], ctx, offsets, dot)
        if inner is None:
            raise FormulaError(f"{ctx.where}: offset() can only be added ('+ offset(...)')")
        return f"{node.value} {inner}" if node.value == "-" else inner
    if k == "paren":
        inner = _term(node.args[0], ctx, offsets, dot)
        return None if inner is None else f"({inner})"
    if k == "num":
        if node.value in ("0", "1"):
            return node.value
        raise FormulaError(f"{ctx.where}: the number {node.value} cannot be a term (only 0 or 1)")
    if k == "name":
        if node.value == ".":
            if dot is None:
                raise FormulaError(f"{ctx.where}: '.' needs the data's columns")
            if not dot:
                raise FormulaError(f"{ctx.where}: '.' stands for no column (every column is used already)")
            return "(" + " + ".join(_py_name(c) for c in dot) + ")"
        if ctx.columns is not None and node.value not in ctx.columns:
            return _py_name(node.value)  # left for the caller's missing-column message
        return _py_name(node.value)
    if k == "call":
        if node.value == "offset":
            if len(node.args) != 1 or node.kwargs:
                raise FormulaError(f"{ctx.where}: offset() takes one expression, got {deparse(node)!r}")
            offsets.append((_py(node.args[0], ctx), deparse(node)))
            return None
        if node.value == "I" and len(node.args) == 1 and not node.kwargs:
            text = f"I({_py(node.args[0], ctx)})"
        else:
            text = _py_call(node, ctx)
        try:  # formulaic's own spelling of the term (backtick-quoted names such as `my.days` kept)
            label = sanitize_python_code(text)
        except SyntaxError as ex:
            raise FormulaError(f"{ctx.where}: the term {deparse(node)!r} cannot be read ({ex.msg}); "
                               "compute the column before fitting") from ex
        ctx.labels[label] = deparse(node)
        return text
    if k == "bin" and node.value in ("|", "||"):
        raise FormulaError(
            f"{ctx.where}: random-effects terms need parentheses: write ({deparse(node)}) as in lme4, "
            f"e.g. 'y ~ x + (1 | g)'"
        )
    if k == "bin" and node.value == "~" or k == "un" and node.value == "~":
        raise FormulaError(f"{ctx.where}: a formula has one '~' (response ~ predictors)")
    raise FormulaError(
        f"{ctx.where}: {deparse(node)!r} is not a formula term; wrap arithmetic or comparisons in I(), "
        f"e.g. I({deparse(node)})"
    )


@dataclass(frozen=True)
class FixedFormula:
    """The fixed part of an R formula, translated.

    ``formulaic`` is the text for formulaic (``lhs ~ rhs``, offsets removed); ``offsets`` the
    Python expressions of ``offset()`` terms with their R spelling; ``cbind`` the two column
    expressions of a ``cbind(successes, failures)`` response; ``variables`` the data columns read;
    ``labels`` maps formulaic's term text back to R's spelling for coefficient names.
    """

    formulaic: str
    response: str
    offsets: tuple[tuple[str, str], ...] = ()
    cbind: tuple[str, str] | None = None
    variables: tuple[str, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def rhs(self) -> str:
        return self.formulaic.split("~", 1)[1].strip()


def parse_fixed(formula: str, columns: list[str] | None = None, exclude_from_dot: tuple[str, ...] = (),
                where: str | None = None) -> FixedFormula:
    """Translate the fixed part ``"y ~ x + I(x^2)"`` (random terms already split off).

    ``columns`` are the data's columns (needed for ``.``); ``exclude_from_dot`` names columns that
    ``.`` must not bring in besides the response's (grouping factors, weights, offset columns).
    Raises :class:`FormulaError` (a ``ValueError``) naming the term that cannot be read.
    """
    where = where or f"formula {formula!r}"
    if formula.count("~") != 1:
        raise FormulaError(f"{where}: a formula has exactly one '~' (response ~ predictors)")
    lhs_text, rhs_text = formula.split("~", 1)
    ctx = _Ctx(None if columns is None else set(columns), where)
    lhs = parse(lhs_text, where)
    rhs = parse(rhs_text if rhs_text.strip() else "1", where)
    lhs_vars = names_in(lhs)
    cbind = None
    if lhs.kind == "call" and lhs.value == "cbind":
        if len(lhs.args) != 2 or lhs.kwargs:
            raise FormulaError(f"{where}: cbind() on the left needs two columns: cbind(successes, failures)")
        cbind = (_py(lhs.args[0], ctx), _py(lhs.args[1], ctx))
        lhs_py = f"{cbind[0]}"
        response = deparse(lhs)
    elif lhs.kind == "name":
        lhs_py = _py_name(lhs.value)
        response = lhs.value
    else:
        lhs_py = _py(lhs, ctx) if lhs.kind != "call" else _term(lhs, ctx, [], None)
        if lhs_py is None:
            raise FormulaError(f"{where}: offset() cannot be the response")
        response = deparse(lhs)
    dot = None
    if columns is not None:
        skip = set(lhs_vars) | set(exclude_from_dot)
        used = names_in(rhs) - {"."}
        dot = [c for c in columns if c not in skip and c not in used]
    offsets: list[tuple[str, str]] = []
    rhs_py = _term(rhs, ctx, offsets, dot)
    if rhs_py is None:
        rhs_py = "1"
    variables = sorted((names_in(lhs) | names_in(rhs) | set(dot if "." in names_in(rhs) else ())) - {"."})
    if columns is not None:
        variables = [v for v in variables if v in columns or v not in R_CONSTANTS]
    return FixedFormula(
        formulaic=f"{lhs_py} ~ {rhs_py}", response=response, offsets=tuple(offsets), cbind=cbind,
        variables=tuple(variables), labels=dict(ctx.labels),
    )


def parse_rhs(expr: str, where: str, columns: list[str] | None = None) -> tuple[str, dict[str, str]]:
    """A random term's left side (``1 + I(x^2)``) as formulaic text and its R labels."""
    ctx = _Ctx(None if columns is None else set(columns), where)
    offsets: list[tuple[str, str]] = []
    text = _term(parse(expr, where), ctx, offsets, None)
    if offsets:
        raise FormulaError(f"{where}: offset() belongs in the fixed part, not in a random term")
    return ("1" if text is None else text), dict(ctx.labels)


def r_labels(names: list[str], labels: dict[str, str]) -> list[str]:
    """Column names from formulaic with each translated term put back in R's spelling."""
    if not labels:
        return list(names)
    keys = sorted(labels, key=len, reverse=True)
    out = []
    for n in names:
        for k in keys:
            if k in n:
                n = n.replace(k, labels[k])
        out.append(n)
    return out
