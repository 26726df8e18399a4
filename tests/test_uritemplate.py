"""`sse_starlette.uritemplate` against RFC 6570's examples and an independent expander.

The expander below follows RFC 6570 §3.2 and Appendix A; it shares no code with the module.
Every expansion it makes of a template must match the compiled template (soundness); the
examples and the operator cases pin down what must not match (precision).
"""

from __future__ import annotations

import re
import string

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from sse_starlette import uritemplate
from sse_starlette.uritemplate import (
    MAX_EXPRESSIONS,
    MAX_TEMPLATE_LENGTH,
    MAX_VARIABLES,
    PREFIX_BUDGET,
    TEMPLATE_CACHE_SIZE,
    TemplateError,
    UriTemplate,
    _reference_regex,
    compile_template,
    is_template,
)

# --- a reference expander (RFC 6570 §3.2, Appendix A) ----------------------------------------

Value = str | list[str] | dict[str, str] | None

UNRESERVED = frozenset(string.ascii_letters + string.digits + "-._~")
RESERVED = frozenset(":/?#[]@!$&'()*+,;=")
HEXDIGITS = frozenset(string.hexdigits)

# operator: (first, sep, named, ifemp, allow reserved)
OPERATORS = {
    "": ("", ",", False, "", False),
    "+": ("", ",", False, "", True),
    "#": ("#", ",", False, "", True),
    ".": (".", ".", False, "", False),
    "/": ("/", "/", False, "", False),
    ";": (";", ";", True, "", False),
    "?": ("?", "&", True, "=", False),
    "&": ("&", "&", True, "=", False),
}


def encode(value: str, reserved: bool) -> str:
    """Pct-encode what is not unreserved (or reserved, or a pct-encoded triplet, if allowed)."""
    out = []
    i = 0
    while i < len(value):
        ch = value[i]
        triplet = value[i : i + 3]
        if ch in UNRESERVED or (reserved and ch in RESERVED):
            out.append(ch)
        elif reserved and len(triplet) == 3 and ch == "%" and set(triplet[1:]) <= HEXDIGITS:
            out.append(triplet)
            i += 3
            continue
        else:
            out.append("".join(f"%{byte:02X}" for byte in ch.encode()))
        i += 1
    return "".join(out)


def expand_varspec(op: str, spec: str, value: str | list[str] | dict[str, str]) -> str:
    _, sep, named, ifemp, reserved = OPERATORS[op]
    explode = spec.endswith("*")
    name, _, prefix = spec.removesuffix("*").partition(":")
    if isinstance(value, str):
        if prefix:
            value = value[: int(prefix)]
        if not named:
            return encode(value, reserved)
        return name + (ifemp if value == "" else "=" + encode(value, reserved))
    assert not prefix, "prefix modifiers do not apply to composite values"
    if not explode:
        if isinstance(value, list):
            joined = ",".join(encode(v, reserved) for v in value)
        else:
            joined = ",".join(
                f"{encode(k, reserved)},{encode(v, reserved)}" for k, v in value.items()
            )
        return f"{name}={joined}" if named else joined
    if named:
        pairs = [(name, v) for v in value] if isinstance(value, list) else list(value.items())
        return sep.join(
            encode(k, True) + (ifemp if v == "" else "=" + encode(v, reserved)) for k, v in pairs
        )
    if isinstance(value, list):
        return sep.join(encode(v, reserved) for v in value)
    return sep.join(f"{encode(k, reserved)}={encode(v, reserved)}" for k, v in value.items())


def expand(template: str, values: dict[str, Value]) -> str:
    out = []
    for piece in re.split(r"(\{[^{}]*\})", template):
        if not piece.startswith("{"):
            out.append(piece)
            continue
        body = piece[1:-1]
        op = body[0] if body[0] in "+#./;?&" else ""
        first, sep = OPERATORS[op][:2]
        written = []
        for spec in body[len(op) :].split(","):
            value = values.get(spec.removesuffix("*").partition(":")[0])
            if value is None or value == [] or value == {}:
                continue  # undefined
            written.append(expand_varspec(op, spec, value))
        if written:
            out.append(first + sep.join(written))
    return "".join(out)


# --- RFC 6570 §3.2 -----------------------------------------------------------------------------

RFC_VALUES: dict[str, Value] = {
    "count": ["one", "two", "three"],
    "dom": ["example", "com"],
    "dub": "me/too",
    "hello": "Hello World!",
    "half": "50%",
    "var": "value",
    "who": "fred",
    "base": "http://example.com/home/",
    "path": "/foo/bar",
    "list": ["red", "green", "blue"],
    "keys": {"semi": ";", "dot": ".", "comma": ","},
    "v": "6",
    "x": "1024",
    "y": "768",
    "empty": "",
    "empty_keys": {},
    "undef": None,
}

RFC_EXAMPLES = [
    # 3.2.1
    ("{count}", "one,two,three"),
    ("{count*}", "one,two,three"),
    ("{/count}", "/one,two,three"),
    ("{/count*}", "/one/two/three"),
    ("{;count}", ";count=one,two,three"),
    ("{;count*}", ";count=one;count=two;count=three"),
    ("{?count}", "?count=one,two,three"),
    ("{?count*}", "?count=one&count=two&count=three"),
    ("{&count*}", "&count=one&count=two&count=three"),
    # 3.2.2
    ("{var}", "value"),
    ("{hello}", "Hello%20World%21"),
    ("{half}", "50%25"),
    ("O{empty}X", "OX"),
    ("O{undef}X", "OX"),
    ("{x,y}", "1024,768"),
    ("{x,hello,y}", "1024,Hello%20World%21,768"),
    ("?{x,empty}", "?1024,"),
    ("?{x,undef}", "?1024"),
    ("?{undef,y}", "?768"),
    ("{var:3}", "val"),
    ("{var:30}", "value"),
    ("{list}", "red,green,blue"),
    ("{list*}", "red,green,blue"),
    ("{keys}", "semi,%3B,dot,.,comma,%2C"),
    ("{keys*}", "semi=%3B,dot=.,comma=%2C"),
    # 3.2.3
    ("{+var}", "value"),
    ("{+hello}", "Hello%20World!"),
    ("{+half}", "50%25"),
    ("{base}index", "http%3A%2F%2Fexample.com%2Fhome%2Findex"),
    ("{+base}index", "http://example.com/home/index"),
    ("O{+empty}X", "OX"),
    ("O{+undef}X", "OX"),
    ("{+path}/here", "/foo/bar/here"),
    ("here?ref={+path}", "here?ref=/foo/bar"),
    ("up{+path}{var}/here", "up/foo/barvalue/here"),
    ("{+x,hello,y}", "1024,Hello%20World!,768"),
    ("{+path,x}/here", "/foo/bar,1024/here"),
    ("{+path:6}/here", "/foo/b/here"),
    ("{+list}", "red,green,blue"),
    ("{+list*}", "red,green,blue"),
    ("{+keys}", "semi,;,dot,.,comma,,"),
    ("{+keys*}", "semi=;,dot=.,comma=,"),
    # 3.2.4
    ("{#var}", "#value"),
    ("{#hello}", "#Hello%20World!"),
    ("{#half}", "#50%25"),
    ("foo{#empty}", "foo#"),
    ("foo{#undef}", "foo"),
    ("{#x,hello,y}", "#1024,Hello%20World!,768"),
    ("{#path,x}/here", "#/foo/bar,1024/here"),
    ("{#path:6}/here", "#/foo/b/here"),
    ("{#list}", "#red,green,blue"),
    ("{#list*}", "#red,green,blue"),
    ("{#keys}", "#semi,;,dot,.,comma,,"),
    ("{#keys*}", "#semi=;,dot=.,comma=,"),
    # 3.2.5
    ("{.who}", ".fred"),
    ("{.who,who}", ".fred.fred"),
    ("{.half,who}", ".50%25.fred"),
    ("www{.dom*}", "www.example.com"),
    ("X{.var}", "X.value"),
    ("X{.empty}", "X."),
    ("X{.undef}", "X"),
    ("X{.var:3}", "X.val"),
    ("X{.list}", "X.red,green,blue"),
    ("X{.list*}", "X.red.green.blue"),
    ("X{.keys}", "X.semi,%3B,dot,.,comma,%2C"),
    ("X{.keys*}", "X.semi=%3B.dot=..comma=%2C"),
    ("X{.empty_keys}", "X"),
    ("X{.empty_keys*}", "X"),
    # 3.2.6
    ("{/who}", "/fred"),
    ("{/who,who}", "/fred/fred"),
    ("{/half,who}", "/50%25/fred"),
    ("{/who,dub}", "/fred/me%2Ftoo"),
    ("{/var}", "/value"),
    ("{/var,empty}", "/value/"),
    ("{/var,undef}", "/value"),
    ("{/var,x}/here", "/value/1024/here"),
    ("{/var:1,var}", "/v/value"),
    ("{/list}", "/red,green,blue"),
    ("{/list*}", "/red/green/blue"),
    ("{/list*,path:4}", "/red/green/blue/%2Ffoo"),
    ("{/keys}", "/semi,%3B,dot,.,comma,%2C"),
    ("{/keys*}", "/semi=%3B/dot=./comma=%2C"),
    # 3.2.7
    ("{;who}", ";who=fred"),
    ("{;half}", ";half=50%25"),
    ("{;empty}", ";empty"),
    ("{;v,empty,who}", ";v=6;empty;who=fred"),
    ("{;v,bar,who}", ";v=6;who=fred"),
    ("{;x,y}", ";x=1024;y=768"),
    ("{;x,y,empty}", ";x=1024;y=768;empty"),
    ("{;x,y,undef}", ";x=1024;y=768"),
    ("{;hello:5}", ";hello=Hello"),
    ("{;list}", ";list=red,green,blue"),
    ("{;list*}", ";list=red;list=green;list=blue"),
    ("{;keys}", ";keys=semi,%3B,dot,.,comma,%2C"),
    ("{;keys*}", ";semi=%3B;dot=.;comma=%2C"),
    # 3.2.8
    ("{?who}", "?who=fred"),
    ("{?half}", "?half=50%25"),
    ("{?x,y}", "?x=1024&y=768"),
    ("{?x,y,empty}", "?x=1024&y=768&empty="),
    ("{?x,y,undef}", "?x=1024&y=768"),
    ("{?var:3}", "?var=val"),
    ("{?list}", "?list=red,green,blue"),
    ("{?list*}", "?list=red&list=green&list=blue"),
    ("{?keys}", "?keys=semi,%3B,dot,.,comma,%2C"),
    ("{?keys*}", "?semi=%3B&dot=.&comma=%2C"),
    # 3.2.9
    ("{&who}", "&who=fred"),
    ("{&half}", "&half=50%25"),
    ("?fixed=yes{&x}", "?fixed=yes&x=1024"),
    ("{&x,y,empty}", "&x=1024&y=768&empty="),
    ("{&var:3}", "&var=val"),
    ("{&list}", "&list=red,green,blue"),
    ("{&list*}", "&list=red&list=green&list=blue"),
    ("{&keys}", "&keys=semi,%3B,dot,.,comma,%2C"),
    ("{&keys*}", "&semi=%3B&dot=.&comma=%2C"),
]


@pytest.mark.parametrize(("template", "expansion"), RFC_EXAMPLES)
def test_the_reference_expander_agrees_with_the_rfc(template: str, expansion: str) -> None:
    assert expand(template, RFC_VALUES) == expansion


@pytest.mark.parametrize(("template", "expansion"), RFC_EXAMPLES)
def test_every_rfc_example_matches(template: str, expansion: str) -> None:
    assert compile_template(template).match(expansion)
    assert re.fullmatch(_reference_regex(template), expansion)


# --- Mercure ---------------------------------------------------------------------------------


def test_mercure_spec_examples() -> None:
    books = compile_template("https://example.com/books/{id}")
    assert books.match("https://example.com/books/1")
    assert books.match("https://example.com/books/")  # id = ""
    assert not books.match("https://example.com/books/1/reviews")
    assert not books.match("https://example.com/authors/1")
    assert not books.match("https://example.com/books")

    user = compile_template("https://example.com/users/foo/{?topic}")
    alternate = "https://example.com/users/foo/?topic=https%3A%2F%2Fexample.com%2Fbooks%2F1"
    assert user.match(alternate)
    assert user.match("https://example.com/users/foo/")
    assert not user.match("https://example.com/users/bar/?topic=x")
    assert not user.match("https://example.com/users/foo/?topic=https://example.com/books/1")

    subscriptions = compile_template("/.well-known/mercure/subscriptions/{topic}/{subscriber}")
    assert subscriptions.match(
        "/.well-known/mercure/subscriptions/https%3A%2F%2Fexample.com%2F%7Bid%7D/urn%3Auuid%3A1"
    )
    assert not subscriptions.match("/.well-known/mercure/subscriptions/a/b/c")


def test_the_go_hubs_own_cases() -> None:
    # dunglas/mercure topicselector_test.go
    assert compile_template("https://example.com/{foo}/bar").match("https://example.com/foo/bar")
    assert not compile_template("https://example.com/{foo}/bar").match(
        "https://example.com/foo/bar/baz"
    )
    assert compile_template("https://example.com/{fistname}/{lastname}").match(
        "https://example.com/kevin/dunglas"
    )
    assert not compile_template("https://example.com/{x}").match("https://other.com/a")
    # yosida95/uritemplate match_test.go
    assert compile_template("https://example.com/dictionary/{term:1}/{term}").match(
        "https://example.com/dictionary/c/cat"
    )
    assert not compile_template("https://example.com/foo{?bar}").match("https://example.com/foobaz")


# --- operator by operator --------------------------------------------------------------------

CASES: list[tuple[str, list[str], list[str]]] = [
    # (template, matches, does not match)
    ("{x}", ["", "abc", "a,b", "%20", "%c3%a9", "A-._~"], ["a/b", "a=b", "%2", "%zz", "é", "a b"]),
    ("{x*}", ["a,b", "k=v,k2=", "a"], ["a/b", "a&b"]),
    ("{+x}", ["a/b?c=d#e", "%20", "", "[::1]:80"], ["a b", "%", "%2", "{", "a|b", "é"]),
    ("{#x}", ["", "#", "#a/b", "##", "#%20"], ["a", "#a b"]),
    ("{.x}", ["", ".", ".a", ".a.b", ".a,b"], ["a", ".a/b", ".a=b"]),
    ("{.x*}", [".a.b", ".k=v.k2=v2"], [".a,b"]),
    ("{/x}", ["", "/", "/a", "/a,b"], ["a", "/a/b", "//"]),
    ("{/x*}", ["/a/b/c", "/k=v/k2=v2", "//"], ["/a/b=c=d", "/a?b"]),
    ("{;x}", ["", ";x", ";x=1", ";x=1,2", ";x="], [";y=1", "x=1", ";x;x", ";"]),
    # keys of exploded pairs are written as literals are: reserved characters stay
    ("{;x*}", [";x;x=1", ";k=v;k2", ";a:b=1", ";x=1=2"], [";a b", ";%", "x"]),
    ("{?x}", ["", "?x=", "?x=1", "?x=a,b"], ["?x", "?y=1", "?", "?x=1&x=2", "&x=1"]),
    ("{?x*}", ["?x=1&x=2", "?a=1&b=", "?k:/=1", "?=", "?x=1=2"], ["?x", "?x=1&y", "?x=a/b"]),
    ("{&x}", ["", "&x=1"], ["?x=1", "&x"]),
    ("{x,y}", ["", "1024,768", "a", "a,b,c"], ["a/b"]),
    ("{?x,y}", ["?x=1&y=2", "?y=2", "?x=1", ""], ["?y=2&x=1", "?x=1&x=2", "?x=1&", "?"]),
    ("{/x,y}", ["/a/b", "/a", "/a,b/c"], ["/a/b/c"]),
    ("{;x,y}", [";x;y", ";y=1"], [";y;x"]),
    ("{x:3}", ["", "abc", "%C3%A9bc", "%20%20%20", "%E2%82%AC"], ["abcd", "%20%20%20%20"]),
    ("{+x:3}", ["a/b", "%2Fab", "%F0%9F%98%80ab"], ["a/bc"]),
    ("{?x:2}", ["", "?x=", "?x=ab"], ["?x=abc", "?x"]),
    ("{;x:2}", [";x", ";x=ab"], [";x=", ";x=abc"]),
    ("{.x:1,y}", [".a.b", ".a", ".bcd", ".ab.c"], [".a/b", "ab"]),
    ("a{x}b{y}c", ["abc", "a1b2c", "abbbc"], ["ab", "a/b/c"]),
    ("é{x}", ["é", "éa"], ["%C3%A9a", "ea"]),
    ("%20{x}", ["%20a"], [" a", "%2fa"]),
    ("{+a}/{+b}/{+c}", ["a/b/c", "/////", "a/b/c/d/e"], ["a/b", "a b/c/d"]),
]


@pytest.mark.parametrize(("template", "matches", "mismatches"), CASES)
def test_operator_cases(template: str, matches: list[str], mismatches: list[str]) -> None:
    compiled = compile_template(template)
    regex = _reference_regex(template)
    for topic in matches:
        assert compiled.match(topic), (template, topic)
        assert re.fullmatch(regex, topic), (template, topic)
    for topic in mismatches:
        assert not compiled.match(topic), (template, topic)
        assert not re.fullmatch(regex, topic), (template, topic)


def test_where_this_differs_from_the_go_hub() -> None:
    # The Go hub's regular expression matches each of these; RFC 6570 expands none of them.
    assert not compile_template("{?q}").match("?x=1")  # a parameter with another name
    assert not compile_template("{?q}").match("?")
    assert not compile_template("{x:2}").match("abc")  # longer than the prefix
    assert not compile_template("{?x,y}").match("?y=1&x=2")  # variables out of order


def test_a_template_without_expressions_is_an_exact_topic() -> None:
    compiled = compile_template("https://example.com/books/1")
    assert compiled.variables == ()
    assert compiled.match("https://example.com/books/1")
    assert not compiled.match("https://example.com/books/12")
    assert compile_template("*").match("*")
    assert not compile_template("*").match("anything")


def test_public_attributes() -> None:
    compiled = compile_template("https://example.com/{a}/{+b,a}{?c*}")
    assert isinstance(compiled, UriTemplate)
    assert compiled.template == "https://example.com/{a}/{+b,a}{?c*}"
    assert compiled.variables == ("a", "b", "c")
    assert repr(compiled) == "compile_template('https://example.com/{a}/{+b,a}{?c*}')"


# --- malformed and oversized templates -------------------------------------------------------

MALFORMED = [
    ("{", "unclosed"),
    ("a{b", "unclosed"),
    ("a}b", "without '{'"),
    ("{}", "empty expression"),
    ("{+}", "empty variable name"),
    ("{a,}", "empty variable name"),
    ("{,a}", "reserved operator"),  # "," is op-reserved (RFC 6570 §2.2)
    ("{a{b}}", "inside an expression"),
    ("{=a}", "reserved operator"),
    ("{!a}", "reserved operator"),
    ("{|a}", "reserved operator"),
    ("{a b}", "in variable name"),
    ("{a-b}", "in variable name"),
    ("{.a.}", "ends with '.'"),
    ("{a..b}", "misplaced '.'"),
    ("{.}", "empty variable name"),
    ("{a%2}", "two hex digits"),
    ("{a:}", "prefix length"),
    ("{a:0}", "prefix length"),
    ("{a:01}", "prefix length"),
    ("{a:10000}", "prefix length"),
    ("{a:1a}", "prefix length"),
    ("{a:٣}", "prefix length"),
    ("{a:3*}", "both a prefix and an explode"),
    ("{a*:3}", "in variable name"),
    ("{a**}", "in variable name"),
    ("a b{c}", "not allowed"),
    ('a"{c}', "not allowed"),
    ("a<{c}", "not allowed"),
    ("a\\{c}", "not allowed"),
    ("a^{c}", "not allowed"),
    ("a`{c}", "not allowed"),
    ("a|{c}", "not allowed"),
    ("a\x7f{c}", "not allowed"),
    ("a\ud800{c}", "not allowed"),
    ("a\ufdd0{c}", "not allowed"),
    ("a\U000e0001{c}", "not allowed"),
    ("50%{c}", "two hex digits"),
    ("%zz{c}", "two hex digits"),
]


@pytest.mark.parametrize(("template", "message"), MALFORMED)
def test_malformed_templates_are_refused(template: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)) as caught:
        compile_template(template)
    assert isinstance(caught.value, TemplateError)
    assert "invalid URI template" in str(caught.value)
    assert not is_template(template)


def test_well_formed_edge_cases_are_accepted() -> None:
    for template in ["{a.b}", "{%41b}", "{a:9999}", "{_1}", "'{a}'", "\U0001f600{a}", "{a*,b:1}"]:
        assert is_template(template), template


def test_oversized_templates_are_refused() -> None:
    longest = "{a}" + "x" * (MAX_TEMPLATE_LENGTH - 3)
    assert compile_template(longest).match("1" + "x" * (MAX_TEMPLATE_LENGTH - 3))
    with pytest.raises(ValueError, match="too long"):
        compile_template(longest + "x")
    assert not is_template(longest + "x")

    compile_template("{a}" * MAX_EXPRESSIONS)
    with pytest.raises(ValueError, match=f"more than {MAX_EXPRESSIONS} expressions"):
        compile_template("{a}" * (MAX_EXPRESSIONS + 1))

    names = [f"v{i}" for i in range(MAX_VARIABLES + 1)]
    compile_template("{" + ",".join(names[:-1]) + "}")
    with pytest.raises(ValueError, match=f"more than {MAX_VARIABLES} variables"):
        compile_template("{" + ",".join(names) + "}")


def test_prefixes_past_the_budget_match_as_unbounded() -> None:
    within = PREFIX_BUDGET // 2
    compiled = compile_template(f"{{a:{within}}}/{{b:{within}}}/{{c:2}}")
    assert compiled.match("a" * within + "/" + "b" * within + "/cc")
    assert not compiled.match("a" * (within + 1) + "/b/c")
    assert not compiled.match("a/" + "b" * (within + 1) + "/c")
    assert compiled.match("a/b/" + "c" * 100)  # past the budget: a superset


@given(st.text(max_size=40))
def test_compiling_anything_returns_a_matcher_or_raises_value_error(selector: str) -> None:
    try:
        compiled = compile_template(selector)
    except ValueError as exc:
        assert isinstance(exc, TemplateError)
        assert not is_template(selector)
        return
    assert compiled.match(selector) == (not compiled.variables)  # "{" is in no expansion
    assert compiled.match(expand(selector, {}))  # every variable undefined


SELECTOR_PIECES = ["{", "}", "a", ",", ":", "*", "+", "#", ".", "/", ";", "?", "&", "=", "%", "2",
                   "%20", "|", "!", " ", "é", "1", "0"]  # fmt: skip


@settings(max_examples=500)
@given(st.lists(st.sampled_from(SELECTOR_PIECES), max_size=12).map("".join))
def test_near_templates_never_leak_other_errors(selector: str) -> None:
    try:
        compile_template(selector)
    except TemplateError:
        assert not is_template(selector)
    else:
        assert is_template(selector) == ("{" in selector)


# --- is_template and the cache ---------------------------------------------------------------


def test_is_template() -> None:
    assert is_template("https://example.com/books/{id}")
    assert is_template("{+path}")
    assert not is_template("https://example.com/books/1")
    assert not is_template("*")
    assert not is_template("")
    assert not is_template("https://example.com/{")  # malformed: an exact topic
    assert not is_template("https://example.com/{}")
    assert not is_template("{" + "a" * MAX_TEMPLATE_LENGTH + "}")


def test_compiled_templates_are_cached() -> None:
    assert compile_template("cached/{x}") is compile_template("cached/{x}")
    assert compile_template.cache_info().maxsize == TEMPLATE_CACHE_SIZE


# --- soundness: every expansion matches ------------------------------------------------------

NAMES = ["a", "b", "x.y", "v_1", "%41b"]
VALUE_CHARS = [*"aZ09-._~", *":/?#[]@!$&'()*+,;=", "%", "%41", "%7e", "%zz", " ", "é", "€", "😀",
               "\x00", "{", "}", "\"", "<"]  # fmt: skip
LITERALS = ["a", "/", "-", ".", ":", "?", "=", "&", "#", ",", ";", "~", "!", "$", "'", "(", ")",
            "*", "+", "@", "[", "]", "%20", "%2F", "é"]  # fmt: skip

value_texts = st.lists(st.sampled_from(VALUE_CHARS), max_size=6).map("".join)
any_values: st.SearchStrategy[Value] = st.one_of(
    st.none(),
    value_texts,
    st.lists(value_texts, max_size=3),
    st.dictionaries(value_texts, value_texts, max_size=3),
)


@st.composite
def varspecs(draw: st.DrawFn) -> str:
    name = draw(st.sampled_from(NAMES))
    modifier = draw(st.sampled_from(["", "", "*", ":1", ":2", ":5"]))
    return name + modifier


@st.composite
def templates(draw: st.DrawFn) -> str:
    parts = []
    for _ in range(draw(st.integers(1, 4))):
        parts.append("".join(draw(st.lists(st.sampled_from(LITERALS), max_size=3))))
        op = draw(st.sampled_from(list(OPERATORS)))
        parts.append("{" + op + ",".join(draw(st.lists(varspecs(), min_size=1, max_size=3))) + "}")
    parts.append("".join(draw(st.lists(st.sampled_from(LITERALS), max_size=3))))
    return "".join(parts)


@st.composite
def templates_and_values(draw: st.DrawFn) -> tuple[str, dict[str, Value]]:
    template = draw(templates())
    prefixed = set(re.findall(r"[{,][+#./;?&]?([\w.%]+):\d", template))
    values = {
        name: draw(st.one_of(st.none(), value_texts) if name in prefixed else any_values)
        for name in NAMES
    }
    return template, values


@settings(max_examples=1000)
@given(templates_and_values())
def test_every_expansion_matches(case: tuple[str, dict[str, Value]]) -> None:
    template, values = case
    expansion = expand(template, values)
    assert compile_template(template).match(expansion), (template, values, expansion)


@settings(max_examples=300)
@given(
    st.sampled_from(RFC_EXAMPLES), st.dictionaries(st.sampled_from(list(RFC_VALUES)), any_values)
)
def test_rfc_templates_match_their_expansions_of_other_values(
    example: tuple[str, str], overrides: dict[str, Value]
) -> None:
    template = example[0]
    values = {**RFC_VALUES, **overrides}
    for name, value in overrides.items():  # prefixes take strings only
        if f"{name}:" in template and not isinstance(value, str):
            values[name] = None
    assert compile_template(template).match(expand(template, values))


# --- the automaton against Python's `re` on the same language ----------------------------------


@st.composite
def templates_and_topics(draw: st.DrawFn) -> tuple[str, str]:
    template = draw(templates())
    pieces = [*sorted(set(template) - set("{}")), "%", "A", "9", "%C3", "%A9", "=", ",", "x"]
    topic = "".join(draw(st.lists(st.sampled_from(pieces), max_size=8)))
    return template, topic


@settings(max_examples=500)
@given(templates_and_topics())
def test_the_automaton_agrees_with_a_backtracking_regex(case: tuple[str, str]) -> None:
    template, topic = case
    expected = re.fullmatch(_reference_regex(template), topic) is not None
    assert compile_template(template).match(topic) == expected, (template, topic)


def test_a_full_state_cache_is_emptied_and_refilled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(uritemplate, "_CACHE_BUDGET", 5)
    template = "x{a:4}{.b,c}/{+d}"
    compiled = UriTemplate(template)  # uncached: its own small automaton
    regex = _reference_regex(template)
    for topic in ["x", "xabcd.e.f/g", "xabcde", "x%C3%A9.b/c", "xab/cd", "x.b/%2F", "xab.c.d/"]:
        for _ in range(2):
            assert compiled.match(topic) == bool(re.fullmatch(regex, topic)), topic
            assert len(compiled._states) <= compiled._size <= 5


# --- adversarial topics: work that does not grow with the topic ------------------------------

ADJACENT = [
    "{a}{b}{c}{d}",
    "{+a}/{+b}/{+c}",
    "{a}.{b}.{c}.{d}",
    "https://example.com/{+a}{+b}{+c}{+d}/{e}",
    "{/a*,b*,c*}{?d*}{&e*}",
    "{a,b,c}{.d*}{/e}",
    "{#a}{#b}{#c}",
    "{+a}a{+b}a{+c}a{+d}a",
    "{a:3}{b:5}{+c}{d}",
]
LONG_TOPICS = [
    "a" * 100_000,
    "a/" * 50_000,
    "a." * 50_000,
    "/a=" * 33_000,
    "%C3%A9" * 16_000,
    "a" * 100_000 + " ",
    "a/" * 50_000 + "{",
    "?a=&" * 25_000,
]


@pytest.mark.parametrize("template", ADJACENT)
def test_long_topics_cost_no_more_automaton_work_than_short_ones(template: str) -> None:
    # Counting, not timing: `_work` counts the nfa states the matcher settles when it meets
    # a (state, character) pair for the first time. A backtracking matcher would redo work
    # per character; here a long topic costs dictionary lookups once its states are known.
    compiled = UriTemplate(template)
    regex = _reference_regex(template)
    for topic in LONG_TOPICS:
        short = topic[:300]
        compiled.match(short)
        before = compiled._work
        long_result = compiled.match(topic)
        assert compiled._work - before <= 2 * len(compiled._eps) * 30, (template, topic[:6])
        before = compiled._work
        assert compiled.match(topic) == long_result
        assert compiled._work == before  # all known now
        tiny = topic[:12]  # the backtracking regex would blow up on `short` already
        assert compiled.match(tiny) == bool(re.fullmatch(regex, tiny))


def test_prefixes_cost_at_most_the_budget_in_new_states() -> None:
    template = "{" + ",".join(f"v{i}:16" for i in range(16)) + "}{+rest}"
    compiled = UriTemplate(template)
    for topic in LONG_TOPICS:
        before = compiled._work
        compiled.match(topic)
        # at most one new state per prefix unit counted, each settling every nfa state twice
        assert compiled._work - before <= 2 * len(compiled._eps) * (PREFIX_BUDGET * 4 + 100)


@settings(max_examples=200, deadline=None)
@given(templates(), st.lists(st.sampled_from(["a", "/", ".", ",", "=", "&", "%41", ";", "?"]),
                             min_size=1, max_size=4), st.integers(100, 3000))  # fmt: skip
def test_work_per_character_is_bounded_by_the_automaton(
    template: str, unit: list[str], repeat: int
) -> None:
    # By construction each character costs at most one step of the nfa, which settles each of
    # its states at most twice: the bound that makes matching linear in the topic's length.
    compiled = UriTemplate(template)
    topic = "".join(unit) * repeat
    assume(len(topic) <= 12_000)
    compiled.match(topic)
    assert compiled._work <= 2 * len(compiled._eps) * (len(topic) + 1)
