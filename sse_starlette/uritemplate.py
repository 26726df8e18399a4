"""RFC 6570 URI templates as Mercure topic selectors: which topics a template can expand to.

A Mercure subscriber selects topics with an exact topic, `*`, or a URI template (levels 1 to 4)
that a topic matches when some values of its variables expand the template to exactly that
topic: `https://example.com/books/{id}` selects `https://example.com/books/1` but not
`https://example.com/books/1/reviews`, while `https://example.com/{+path}` selects both.

    >>> books = compile_template("https://example.com/books/{id}{?page}")
    >>> books.match("https://example.com/books/1?page=2")
    True
    >>> books.match("https://example.com/books/1/reviews")
    False

The set of expansions, read from RFC 6570 §3.2 and its Appendix A for every kind of value
(undefined, string, list, associative array), is turned into a small automaton. Where the
strict set would make the automaton large or fragile, the match is a little broader; every
such case is a superset, so no expansion is ever missed:

- a percent-encoded triplet `%XX` in a variable's part is accepted with either case of hex
  digit and any byte (RFC 3986 §2.1 calls the cases equivalent), so `{x}` also matches `%41`
  and `%c3%a9`, which no strict expansion yields;
- a prefix `{x:3}` counts characters as an expansion does, with one exception: a
  percent-encoded character is one `%XX` followed by at most three UTF-8 continuation
  triplets (`%80`-`%BF`) and is never counted as more than one, so `{x:1}` matches `%C3%A9`
  (`é`) and also some strings that are not UTF-8;
- `{;x}` also matches `;x=` (an expander that writes a one-item list `[""]` that way);
- prefixes past `PREFIX_BUDGET` (their running sum over the template) match as if absent.

Python's `re` is not used to match: it backtracks, and the languages of adjacent variables
overlap (`{+a}/{+b}/{+c}` against a long run of `a/` takes polynomial time there, nested
alternatives exponential time).

How this differs from the Go hub (dunglas/mercure v0.24.2 matches with
`github.com/yosida95/uritemplate/v3`'s `Template.Regexp`, where each expression becomes one
optional run of allowed characters):

- Go does not check the names of `;`, `?` and `&` parameters nor their order or count: there
  `{?q}` matches `?x=1`, `?q` and a bare `?`, and `{?x,y}` matches `?y=1&x=2`; here none do;
- Go ignores prefix lengths (`{x:2}` matches `abcd` there, not here);
- Go lets any `=` and `,` into a named or exploded value (`{?x}` matches `?x=a=b`, `{/x*}`
  matches `/a=b=c`), where an expansion would have written `%3D`;
- the other way, here the keys of exploded pairs may hold reserved characters, since RFC 6570
  Appendix A writes them as literals (`{?x*}` matches `?a/b=1`, which Go refuses).

Templates the Go parser refuses are refused here too (both hubs then compare the selector as
a plain string), as are templates over the size limits below.

Linear time, by construction: the template becomes a nondeterministic automaton (Thompson
construction, of size m, bounded through the template limits; its only counters are the prefix
lengths), and a topic is read once, left to right, through the deterministic automaton built
lazily from it (subset construction, each state the set of live threads, cached per template
within a budget). There is no backtracking: each character costs one dictionary lookup, and
the first time a state meets a character one step of the nondeterministic automaton, which
settles each of its m states at most twice. The worst case is thus O(len(topic) · m log m);
usually all states are known after a few topics and a match costs len(topic) lookups. Prefix
counting is what can keep making new states along one topic (counts differ), hence the budget.
"""

from __future__ import annotations

import functools
import heapq
import re
from dataclasses import dataclass

__all__ = [
    "MAX_EXPRESSIONS",
    "MAX_TEMPLATE_LENGTH",
    "MAX_VARIABLES",
    "PREFIX_BUDGET",
    "TEMPLATE_CACHE_SIZE",
    "TemplateError",
    "UriTemplate",
    "compile_template",
    "is_template",
]

MAX_TEMPLATE_LENGTH = 1024
"""Longest template accepted, in characters."""

MAX_EXPRESSIONS = 32
"""Most `{...}` expressions accepted in one template."""

MAX_VARIABLES = 64
"""Most variables accepted in one template, over all its expressions."""

TEMPLATE_CACHE_SIZE = 512
"""How many compiled templates `compile_template` keeps (least recently used dropped first)."""

PREFIX_BUDGET = 256
"""Prefix lengths (`{x:3}`) are honoured in order while their sum stays within this; a prefix
past it is matched as if absent (a superset of its expansions), which bounds the work of the
counting (see the module's notes)."""

# Per template: how many states and transitions the lazily built automaton keeps (about a
# megabyte at most); it is emptied when it grows past this. Real templates need a few dozen.
_CACHE_BUDGET = 8192

# RFC 3986 §2.2, §2.3 and RFC 6570 §1.5.
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_RESERVED = frozenset(":/?#[]@!$&'()*+,;=")
_HEX = frozenset("0123456789ABCDEFabcdef")
_CONTINUATION_HEX = frozenset("89ABab")  # first digit of a UTF-8 continuation byte, %80-%BF
_VARCHAR = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")
_OPERATOR_CHARS = frozenset("+#./;?&")
_RESERVED_OPERATOR_CHARS = frozenset("=,!@|")  # op-reserved, RFC 6570 §2.2


class TemplateError(ValueError):
    """A selector that is not a URI template this module accepts (malformed or too large)."""


def _is_literal_char(ch: str) -> bool:
    """RFC 6570 §2.1 `literals` (without pct-encoded), with `'` allowed as in erratum 6937."""
    c = ord(ch)
    if c < 0x80:
        return 0x21 <= c <= 0x7E and ch not in '"%<>\\^`{|}'
    return (
        0xA0 <= c <= 0xD7FF
        or 0xE000 <= c <= 0xFDCF  # iprivate E000-F8FF, then ucschar F900-FDCF
        or 0xFDF0 <= c <= 0xFFEF
        or (c >= 0x10000 and (c & 0xFFFF) <= 0xFFFD and not 0xE0000 <= c < 0xE1000)
    )


# --- parsing --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Operator:
    first: str
    sep: str
    named: bool
    ifemp: str
    reserved: bool  # allow U+R (reserved characters and pct-encoded triplets pass through)


_OPERATORS = {
    "": _Operator("", ",", False, "", False),
    "+": _Operator("", ",", False, "", True),
    "#": _Operator("#", ",", False, "", True),
    ".": _Operator(".", ".", False, "", False),
    "/": _Operator("/", "/", False, "", False),
    ";": _Operator(";", ";", True, "", False),
    "?": _Operator("?", "&", True, "=", False),
    "&": _Operator("&", "&", True, "=", False),
}


@dataclass(frozen=True, slots=True)
class _VarSpec:
    name: str
    prefix: int | None
    explode: bool


@dataclass(frozen=True, slots=True)
class _Expression:
    operator: _Operator
    varspecs: tuple[_VarSpec, ...]


def _error(template: str, position: int, problem: str) -> TemplateError:
    return TemplateError(f"invalid URI template {template[:80]!r}: {problem} at index {position}")


def _is_pct_triplet(text: str, i: int) -> bool:
    return i + 2 < len(text) and text[i + 1] in _HEX and text[i + 2] in _HEX


def _parse_varname(template: str, start: int, name: str) -> None:
    """Refuse a `varname` that is not varchar *( ["."] varchar ) (RFC 6570 §2.3)."""
    if not name:
        raise _error(template, start, "empty variable name")
    i = 0
    previous_dot = True  # a name cannot start with "."
    while i < len(name):
        ch = name[i]
        if ch == ".":
            if previous_dot:
                raise _error(template, start + i, "misplaced '.' in variable name")
            previous_dot = True
            i += 1
            continue
        previous_dot = False
        if ch == "%":
            if not _is_pct_triplet(name, i):
                raise _error(template, start + i, "'%' not followed by two hex digits")
            i += 3
        elif ch in _VARCHAR:
            i += 1
        else:
            raise _error(template, start + i, f"character {ch!r} in variable name")
    if previous_dot:
        raise _error(template, start + len(name) - 1, "variable name ends with '.'")


def _parse_expression(template: str, start: int, body: str) -> _Expression:
    """Parse the text between `{` (at index `start` - 1) and its `}`."""
    if not body:
        raise _error(template, start - 1, "empty expression '{}'")
    op = ""
    if body[0] in _OPERATOR_CHARS:
        op = body[0]
    elif body[0] in _RESERVED_OPERATOR_CHARS:
        raise _error(template, start, f"reserved operator {body[0]!r}")
    varspecs = []
    offset = start + len(op)
    for spec in body[len(op) :].split(","):
        explode = spec.endswith("*")
        name, colon, digits = spec.removesuffix("*").partition(":")
        _parse_varname(template, offset, name)
        prefix = None
        if colon:
            if explode:
                raise _error(template, offset, "both a prefix and an explode modifier")
            if not (
                0 < len(digits) <= 4 and digits.isascii() and digits.isdigit() and digits[0] != "0"
            ):
                raise _error(
                    template, offset + len(name) + 1, "prefix length not an integer 1-9999"
                )
            prefix = int(digits)
        varspecs.append(_VarSpec(name, prefix, explode))
        offset += len(spec) + 1
    return _Expression(_OPERATORS[op], tuple(varspecs))


def _parse(template: str) -> list[str | _Expression]:
    """Literal runs (str) and expressions, in order; raises TemplateError."""
    if len(template) > MAX_TEMPLATE_LENGTH:
        raise TemplateError(
            f"URI template too long: {len(template)} characters, at most {MAX_TEMPLATE_LENGTH}"
        )
    parts: list[str | _Expression] = []
    literal_start = 0
    expressions = variables = 0
    i = 0
    while i < len(template):
        ch = template[i]
        if ch == "{":
            end = template.find("}", i + 1)
            if end < 0:
                raise _error(template, i, "unclosed '{'")
            nested = template.find("{", i + 1, end)
            if nested >= 0:
                raise _error(template, nested, "'{' inside an expression")
            if literal_start < i:
                parts.append(template[literal_start:i])
            expression = _parse_expression(template, i + 1, template[i + 1 : end])
            parts.append(expression)
            expressions += 1
            variables += len(expression.varspecs)
            if expressions > MAX_EXPRESSIONS:
                raise TemplateError(f"URI template has more than {MAX_EXPRESSIONS} expressions")
            if variables > MAX_VARIABLES:
                raise TemplateError(f"URI template has more than {MAX_VARIABLES} variables")
            i = literal_start = end + 1
        elif ch == "}":
            raise _error(template, i, "'}' without '{'")
        elif ch == "%":
            if not _is_pct_triplet(template, i):
                raise _error(template, i, "'%' not followed by two hex digits")
            i += 3
        elif _is_literal_char(ch):
            i += 1
        else:
            raise _error(template, i, f"character {ch!r} not allowed (percent-encode it)")
    if literal_start < len(template):
        parts.append(template[literal_start:])
    return parts


# --- the language of expansions, as a small regular-expression tree -------------------------


class _Node:
    __slots__ = ()


@dataclass(frozen=True, slots=True)
class _Chars(_Node):
    """One character out of `chars`."""

    chars: frozenset[str]


@dataclass(frozen=True, slots=True)
class _Seq(_Node):
    items: tuple[_Node, ...]


@dataclass(frozen=True, slots=True)
class _Alt(_Node):
    items: tuple[_Node, ...]


@dataclass(frozen=True, slots=True)
class _Star(_Node):
    item: _Node


@dataclass(frozen=True, slots=True)
class _Count(_Node):
    """`unit` repeated 0 to `limit` times."""

    unit: _Node
    limit: int


@dataclass(frozen=True, slots=True)
class _Join(_Node):
    """Nothing, or `first` then a nonempty subsequence of `items` (in order) joined by `sep`."""

    first: str
    sep: str
    items: tuple[_Node, ...]


_EMPTY = _Seq(())


def _lit(text: str) -> _Node:
    return _Seq(tuple(_Chars(frozenset(ch)) for ch in text))


def _opt(node: _Node) -> _Node:
    return _Alt((_EMPTY, node))


def _seq(*items: _Node) -> _Node:
    return _Seq(items)


_PCT = _seq(_lit("%"), _Chars(_HEX), _Chars(_HEX))
_CONTINUATION = _seq(_lit("%"), _Chars(_CONTINUATION_HEX), _Chars(_HEX))
# One character of a value as a prefix counts it: a plain character, or a triplet and up to
# three UTF-8 continuation triplets (one pct-encoded code point, or one passed-through triplet).
_PCT_CODE_POINT = _seq(
    _PCT, _opt(_seq(_CONTINUATION, _opt(_seq(_CONTINUATION, _opt(_CONTINUATION)))))
)


def _encoded(allow: frozenset[str]) -> _Node:
    """Any string that encodes a value with the characters `allow` left as they are."""
    return _Star(_Alt((_Chars(allow), _PCT)))


def _nonempty_encoded(allow: frozenset[str]) -> _Node:
    one = _Alt((_Chars(allow), _PCT))
    return _seq(one, _Star(one))


def _joined(item: _Node, sep: str) -> _Node:
    return _seq(item, _Star(_seq(_lit(sep), item)))


def _prefixed(allow: frozenset[str], limit: int, at_least_one: bool) -> _Node:
    unit = _Alt((_Chars(allow), _PCT_CODE_POINT))
    if not at_least_one:
        return _Count(unit, limit)
    return _seq(unit, _Count(unit, limit - 1)) if limit > 1 else unit


def _varspec_language(op: _Operator, spec: _VarSpec) -> _Node:
    """What one defined variable can expand to (RFC 6570 Appendix A), for any kind of value."""
    allow = _UNRESERVED | _RESERVED if op.reserved else _UNRESERVED
    literal_like = _UNRESERVED | _RESERVED  # names of named pairs: "as for literals"
    if not op.named:
        if spec.prefix is not None:  # strings only: prefixes do not apply to composite values
            return _prefixed(allow, spec.prefix, at_least_one=False)
        if not spec.explode:  # a string, or list members / pair halves joined by ","
            return _encoded(allow | {","})
        # members joined by sep (when sep is itself allowed, just a string of allowed chars)
        members = _encoded(allow) if op.sep in allow else _joined(_encoded(allow), op.sep)
        pairs = _joined(_seq(_encoded(allow), _lit("="), _encoded(allow)), op.sep)
        return _Alt((members, pairs))
    name = _lit(spec.name)
    if spec.prefix is not None:
        value = _prefixed(allow, spec.prefix, at_least_one=True)
        return _seq(name, _Alt((_lit(op.ifemp), _seq(_lit("="), value))))
    if not spec.explode:
        return _seq(name, _Alt((_lit(op.ifemp), _seq(_lit("="), _encoded(allow | {","})))))
    # list members as name=value, pairs as key=value with keys encoded as literals are;
    # an empty member or value is name/key followed by ifemp
    key = _encoded(literal_like)
    item = _seq(key, _Alt((_lit(op.ifemp), _seq(_lit("="), _nonempty_encoded(allow)))))
    return _joined(item, op.sep)


def _language(parts: list[str | _Expression]) -> _Node:
    nodes: list[_Node] = []
    counted = 0
    for part in parts:
        if isinstance(part, str):
            nodes.append(_lit(part))
            continue
        items = []
        for spec in part.varspecs:
            if spec.prefix is not None:
                counted += spec.prefix
                if counted > PREFIX_BUDGET:  # matched as if it had no prefix: a superset
                    spec = _VarSpec(spec.name, None, False)
            items.append(_varspec_language(part.operator, spec))
        nodes.append(_Join(part.operator.first, part.operator.sep, tuple(items)))
    return _Seq(tuple(nodes))


def _char_class(chars: frozenset[str]) -> str:
    if len(chars) == 1:
        return re.escape(next(iter(chars)))
    return "[" + "".join(re.escape(ch) for ch in sorted(chars)) + "]"


def _to_regex(node: _Node) -> str:
    """A Python regular expression for the same language: for tests and reading only, as
    `re` backtracks on it (the matcher never uses it)."""
    if isinstance(node, _Chars):
        return _char_class(node.chars)
    if isinstance(node, _Seq):
        return "".join(_to_regex(item) for item in node.items)
    if isinstance(node, _Alt):
        return "(?:" + "|".join(_to_regex(item) for item in node.items) + ")"
    if isinstance(node, _Star):
        return f"(?:{_to_regex(node.item)})*"
    if isinstance(node, _Count):
        return f"(?:{_to_regex(node.unit)}){{0,{node.limit}}}"
    assert isinstance(node, _Join)
    first, sep = re.escape(node.first), re.escape(node.sep)
    items = [_to_regex(item) for item in node.items]
    choices = [
        items[i] + "".join(f"(?:{sep}{later})?" for later in items[i + 1 :])
        for i in range(len(items))
    ]
    return f"(?:{first}(?:{'|'.join(choices)}))?"


# --- the automaton ---------------------------------------------------------------------------

# ε-moves of the nondeterministic automaton; each thread carries a count, the number of
# prefix units read in the current prefix loop (0 outside loops).
_KEEP, _ZERO, _INCREMENT, _BELOW = range(4)


class _Nfa:
    """Thompson construction: states are ints, moves on characters are labelled with sets."""

    def __init__(self) -> None:
        self.eps: list[list[tuple[int, int, int]]] = []  # (target, kind, limit)
        self.moves: list[list[tuple[frozenset[str], int]]] = []

    def state(self) -> int:
        self.eps.append([])
        self.moves.append([])
        return len(self.eps) - 1

    def epsilon(self, source: int, target: int, kind: int = _KEEP, limit: int = 0) -> None:
        self.eps[source].append((target, kind, limit))

    def emit(self, node: _Node, start: int) -> int:
        """Add `node`'s automaton from `start`; return its end state."""
        if isinstance(node, _Chars):
            end = self.state()
            self.moves[start].append((node.chars, end))
            return end
        if isinstance(node, _Seq):
            for item in node.items:
                start = self.emit(item, start)
            return start
        if isinstance(node, _Alt):
            end = self.state()
            for item in node.items:
                self.epsilon(self.emit(item, start), end)
            return end
        if isinstance(node, _Star):
            loop = self.state()
            self.epsilon(start, loop)
            self.epsilon(self.emit(node.item, loop), loop)
            end = self.state()
            self.epsilon(loop, end)
            return end
        if isinstance(node, _Count):
            check, body, end = self.state(), self.state(), self.state()
            self.epsilon(start, check, _ZERO)
            self.epsilon(check, body, _BELOW, node.limit)
            self.epsilon(self.emit(node.unit, body), check, _INCREMENT)
            self.epsilon(check, end, _ZERO)
            return end
        assert isinstance(node, _Join)
        # Two tracks: `none` (no variable written yet) and `some`; each item is entered with
        # `first` from the former and `sep` from the latter, and leads to the latter.
        none, some = start, -1
        for item in node.items:
            entry = self.state()
            self.epsilon(self.emit(_lit(node.first), none), entry)
            if some >= 0:
                self.epsilon(self.emit(_lit(node.sep), some), entry)
            item_end = self.emit(item, entry)
            next_none, next_some = self.state(), self.state()
            self.epsilon(none, next_none)
            self.epsilon(item_end, next_some)
            if some >= 0:
                self.epsilon(some, next_some)
            none, some = next_none, next_some
        end = self.state()
        self.epsilon(none, end)
        if some >= 0:
            self.epsilon(some, end)
        return end


class _State:
    """A state of the deterministic automaton: the set of (nfa state, count) threads."""

    __slots__ = ("accepting", "by_class", "next", "threads")

    def __init__(self, threads: frozenset[tuple[int, int]], accepting: bool) -> None:
        self.threads = threads
        self.accepting = accepting
        self.next: dict[str, _State] = {}  # by character, for the characters of `_classes`
        self.by_class: dict[int, _State] = {}


class UriTemplate:
    """A compiled URI template: `match(topic)` tells whether some expansion equals `topic`.

    Build one with `compile_template` (cached). `template` is the source text, `variables`
    the variable names in order of first use.
    """

    __slots__ = (
        "_accept",
        "_after_prefix",
        "_classes",
        "_dead",
        "_eps",
        "_moves",
        "_prefix",
        "_size",
        "_start",
        "_states",
        "_suffix",
        "_work",
        "template",
        "variables",
    )

    def __init__(self, template: str) -> None:
        parts = _parse(template)
        self.template = template
        names: dict[str, None] = {}
        for part in parts:
            if isinstance(part, _Expression):
                names.update(dict.fromkeys(spec.name for spec in part.varspecs))
        self.variables: tuple[str, ...] = tuple(names)
        # Every expansion starts with the literal before the first expression and ends with
        # the one after the last: both are checked in C before the automaton runs.
        self._prefix = parts[0] if parts and isinstance(parts[0], str) else ""
        self._suffix = parts[-1] if names and isinstance(parts[-1], str) else ""
        self._work = 0  # threads settled so far: lets tests count the matcher's work

        nfa = _Nfa()
        start = nfa.state()
        self._accept = nfa.emit(_language(parts), start)
        self._eps = nfa.eps
        # Characters that behave alike everywhere share a class; all others are class 0,
        # which no move accepts.
        label_sets = {label for moves in nfa.moves for label, _ in moves}
        signatures: dict[str, list[int]] = {}
        for index, label in enumerate(label_sets):
            for ch in label:
                signatures.setdefault(ch, []).append(index)
        class_ids: dict[tuple[int, ...], int] = {}
        self._classes = {
            ch: class_ids.setdefault(tuple(sig), len(class_ids) + 1)
            for ch, sig in signatures.items()
        }
        self._moves: list[dict[int, tuple[int, ...]]] = []
        for moves in nfa.moves:
            by_class: dict[int, list[int]] = {}
            for label, target in moves:
                for cls in {self._classes[ch] for ch in label}:
                    by_class.setdefault(cls, []).append(target)
            self._moves.append({cls: tuple(targets) for cls, targets in by_class.items()})

        self._states: dict[frozenset[tuple[int, int]], _State] = {}
        self._size = 0  # states and transitions cached
        self._dead = self._state({})
        self._start = self._closure([(0, start)])
        self._after_prefix = self._run(self._start, self._prefix)

    def __repr__(self) -> str:
        return f"compile_template({self.template!r})"

    def match(self, topic: str) -> bool:
        """Whether `topic` is an expansion of the template (see the module's notes)."""
        if not self.variables:
            return topic == self.template
        if not (topic.startswith(self._prefix) and topic.endswith(self._suffix)):
            return False
        start = len(self._prefix)
        state = self._run(self._after_prefix, topic[start:] if start else topic)
        return state.accepting

    def _run(self, state: _State, text: str) -> _State:
        dead = self._dead
        for ch in text:
            following = state.next.get(ch)
            if following is None:
                cls = self._classes.get(ch, 0)
                if cls == 0:
                    return dead
                following = state.by_class.get(cls)
                if following is None:
                    following = self._step(state, cls)
                state.next[ch] = following
                self._grew()
            if following is dead:
                return dead
            state = following
        return state

    def _step(self, state: _State, cls: int) -> _State:
        kernel = [
            (count, target)
            for node, count in state.threads
            for target in self._moves[node].get(cls, ())
        ]
        following = self._closure(kernel)
        state.by_class[cls] = following
        self._grew()
        return following

    def _closure(self, kernel: list[tuple[int, int]]) -> _State:
        """The state of all threads reachable by ε-moves, each nfa state with its least count.

        A thread with a smaller count can do anything one with a larger count can (it only
        has more prefix units left), so only the least count per nfa state is kept. Threads
        are settled in order of count; a `_ZERO` move can lower a settled state's count to 0,
        once, so each state is settled at most twice.
        """
        best: dict[int, int] = {}
        heap = list(kernel)
        heapq.heapify(heap)
        while heap:
            count, node = heapq.heappop(heap)
            if best.get(node, count + 1) <= count:
                continue
            best[node] = count
            self._work += 1
            for target, kind, limit in self._eps[node]:
                if kind == _KEEP:
                    new = count
                elif kind == _ZERO:
                    new = 0
                elif kind == _INCREMENT:
                    new = count + 1
                elif count < limit:  # _BELOW: one more prefix unit fits
                    new = count
                else:
                    continue
                if best.get(target, new + 1) > new:
                    heapq.heappush(heap, (new, target))
        return self._state(best)

    def _state(self, best: dict[int, int]) -> _State:
        moves, accept = self._moves, self._accept
        threads = frozenset((node, count) for node, count in best.items() if moves[node])
        accepting = accept in best
        key = threads | {(-1, 0)} if accepting else threads
        state = self._states.get(key)
        if state is None:
            state = self._states[key] = _State(threads, accepting)
            self._grew()
        return state

    def _grew(self) -> None:
        """Count one more cached state or transition; past the budget, empty the cache but
        for the states the matcher starts from (states already in hand stay usable)."""
        self._size += 1
        if self._size <= _CACHE_BUDGET:
            return
        kept = [getattr(self, name, None) for name in ("_dead", "_start", "_after_prefix")]
        self._states, self._size = {}, 0
        for state in kept:
            if state is not None:
                state.next, state.by_class = {}, {}
                self._states[state.threads | {(-1, 0)} if state.accepting else state.threads] = (
                    state
                )
                self._size += 1


@functools.lru_cache(maxsize=TEMPLATE_CACHE_SIZE)
def compile_template(template: str) -> UriTemplate:
    """Compile an RFC 6570 URI template (levels 1-4) into a matcher; cached.

    Raises `TemplateError` (a `ValueError`) for a malformed template (unclosed or empty
    expression, bad variable name or modifier, a character that must be percent-encoded, a
    reserved operator) and for one longer than `MAX_TEMPLATE_LENGTH` characters or with more
    than `MAX_EXPRESSIONS` expressions or `MAX_VARIABLES` variables.
    """
    return UriTemplate(template)


def is_template(selector: str) -> bool:
    """Whether `selector` is a URI template with at least one expression that
    `compile_template` accepts: a Mercure hub matches such a selector as a template, and
    any other as an exact topic (or `*`), as the Go hub does with templates it cannot parse.
    """
    if "{" not in selector or len(selector) > MAX_TEMPLATE_LENGTH:
        return False
    try:
        return bool(compile_template(selector).variables)
    except TemplateError:
        return False


def _reference_regex(template: str) -> str:
    """The language `compile_template(template)` matches, as a Python regular expression
    (backtracking: for tests on short strings only)."""
    return _to_regex(_language(_parse(template)))
