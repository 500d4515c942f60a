"""Redaction of personal data and secrets in recorded prompts and completions.

The SDK applies it before content leaves the process and the collector (with
``tokentrail serve --redact builtin``) before content is stored, so both share
this module. It uses the standard library only: the collector imports it
without the SDK's OpenTelemetry dependencies mattering.

Built-in patterns, each replaced by ``[REDACTED:<kind>]``:

- ``email``: ``local@domain.tld``.
- ``phone``: ``+`` and a country code with 8 to 15 digits in all, separators
  `` .-()`` allowed; or a North American number written with separators
  (``555-123-4567``, ``(555) 123 4567``, optional ``1-`` prefix). A bare run of
  digits is not taken for a phone number (ids, timestamps, amounts would be).
- ``card``: 13 to 19 digits, optionally grouped by spaces or dashes, starting
  with 2 to 6 (the card networks' ranges) and passing the Luhn check, so
  order numbers and timestamps are left alone.
- ``private_key``: a PEM ``-----BEGIN … PRIVATE KEY-----`` block, to its END line or,
  when that is missing, to the next ``-----`` (at most 64 KiB).
- ``bearer_token``: ``Bearer <token>`` (the token of an Authorization header).
- ``jwt``: ``eyJ….eyJ….…``.
- ``api_key``: OpenAI / Anthropic style ``sk-…`` / ``sk-ant-…`` (20+ characters,
  at least one digit, so ``sk-learn`` prose survives).
- ``aws_access_key``: ``AKIA…`` / ``ASIA…`` key ids.
- ``github_token``: ``ghp_ gho_ ghu_ ghs_ ghr_ github_pat_`` tokens.
- ``slack_token``: ``xoxb- xoxa- xoxp- xoxo- xoxr- xoxs-`` tokens.
- ``secret``: any other run of 32 to 256 characters of ``[A-Za-z0-9+_=-]`` that
  looks random: it mixes lower case, upper case and digits, its character
  class changes between at least 40% of neighbouring characters, and less than
  half of it is word-like (lower-case runs of 4+, upper-case runs of 5+). Long
  identifiers such as ``BetaManagedAgentsToolset20260401Input`` survive; hex
  digests and UUIDs (one letter case) survive too.

This is best-effort pattern matching, not a guarantee: a national phone format
without a country code, a key of an unknown shape or a name is not caught. Add
your own rules (``str -> str`` callables) for what your data needs.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

logger = logging.getLogger("tokentrail")

Rule = Callable[[str], str]
"""A user redaction rule: takes text, returns it with whatever it must hide replaced."""

FAILED = "redaction_failed"
"""The marker kind that replaces content a rule could not process (fail closed)."""


def marker(kind: str) -> str:
    """What a redacted span of text is replaced with."""
    return f"[REDACTED:{kind}]"


class RedactionError(Exception):
    """Redaction could not run; the content must be dropped, never sent as is."""


# --- built-in patterns -------------------------------------------------------------


def luhn_valid(digits: str) -> bool:
    """The Luhn checksum that every payment card number satisfies."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        digit = ord(char) - 48
        if position % 2:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return total % 10 == 0


def _cards(candidate: str) -> str | None:
    """The replacement for a run of digit groups, or None when it holds no card.

    The run may hold other numbers too ("qty 2 4111 1111 1111 1111 exp 12"):
    every card is the longest sequence of whole groups, starting with 2 to 6,
    of 13 to 19 digits that passes Luhn; the numbers around it are kept. Cards
    are printed in groups of 4 (Amex 4-6-5), so a card starts with a group of
    4+ digits and continues with groups of 3+: lists of small numbers
    ("3 5 7 11 13 ...") never pass for one.
    """
    groups = [(m.start(), m.end()) for m in re.finditer(r"\d+", candidate)]
    pieces: list[str] = []
    kept_from = index = 0
    while index < len(groups):
        end = _card_from(candidate, groups, index)
        if end is None:
            index += 1
            continue
        pieces += [candidate[kept_from : groups[index][0]], marker("card")]
        kept_from, index = groups[end - 1][1], end
    if not pieces:
        return None
    return "".join(pieces) + candidate[kept_from:]


def _card_from(text: str, groups: list[tuple[int, int]], first: int) -> int | None:
    """One past the last group of the longest card starting at group ``first``."""
    start, end = groups[first]
    if text[start] not in "23456" or end - start < 4:
        return None
    digits, found = "", None
    for index in range(first, len(groups)):
        start, end = groups[index]
        if end - start < 3:
            break
        digits += text[start:end]
        if len(digits) > 19:
            break
        if len(digits) >= 13 and luhn_valid(digits):
            found = index + 1
    return found


def _phone(candidate: str) -> str | None:
    digits = sum(char.isdigit() for char in candidate)
    if not 8 <= digits <= 15 or candidate.count(".") == 1:
        return None  # one dot reads as a signed decimal ("+12345.6789"), not a phone
    return marker("phone")


_WORDLIKE = re.compile(r"[a-z]{4,}|[A-Z]{5,}")


def _char_class(char: str) -> int:
    return 0 if char.islower() else 1 if char.isupper() else 2


def looks_random(token: str) -> bool:
    """Heuristic for machine-made secrets as opposed to long identifiers (see module doc)."""
    alnum = [char for char in token if char.isalnum()]
    if len(alnum) < 2 or {_char_class(char) for char in alnum} != {0, 1, 2}:
        return False
    changes = sum(_char_class(a) != _char_class(b) for a, b in pairwise(alnum))
    wordlike = sum(len(run) for run in _WORDLIKE.findall(token))
    return changes >= 0.4 * (len(alnum) - 1) and wordlike < 0.5 * len(alnum)


@dataclass(frozen=True)
class _Pattern:
    kind: str
    regex: re.Pattern[str]
    # Substrings every match contains: a cheap `in` test skips the regex on the
    # (usual) text that has none, which keeps redaction fast on the request path.
    hints: tuple[str, ...] = ()
    # Match → replacement, or None to keep the match (it failed validation).
    check: Callable[[str], str | None] | None = None
    # The shortest match, and the fewest digits in one: shorter text, or text
    # with fewer digits, is skipped the same way.
    min_length: int = 1
    min_digits: int = 0

    def may_match(self, text: str, digits: int) -> bool:
        if len(text) < self.min_length or digits < self.min_digits:
            return False
        return not self.hints or any(hint in text for hint in self.hints)

    def apply(self, text: str) -> str:
        return self.regex.sub(self._replace, text)

    def _replace(self, match: re.Match[str]) -> str:
        found = match.group()
        if self.check is None:
            return marker(self.kind)
        replacement = self.check(found)
        return found if replacement is None else replacement


def _digits_or_phones(candidate: str) -> str | None:
    # A digit run that holds no card may still hold a phone number.
    return _cards(candidate) or _apply_all(_PHONE_PATTERNS, candidate)


def _random_secret(candidate: str) -> str | None:
    return marker("secret") if looks_random(candidate) else None


_PHONE_PATTERNS = (
    _Pattern(
        "phone",
        re.compile(r"(?<![\w+])\+[1-9][\d ().-]{6,22}\d(?!\d)"),
        ("+",),
        _phone,
        min_length=9,
        min_digits=8,
    ),
    _Pattern(
        "phone",
        re.compile(
            r"(?<![\w+.-])(?:1[ .-])?(?:\(\d{3}\)[ .-]?|\d{3}[ .-])\d{3}[ .-]\d{4}(?![\w.-]?\d)"
        ),
        min_length=12,
        min_digits=10,
    ),
)

# Applied in this order, each to the previous one's output: the specific key
# shapes run before the generic ``secret``, and digit runs go to ``card`` before
# ``phone``. Lookbehinds keep a pattern from starting inside a longer run, which
# also keeps each scan linear on long tokens.
PATTERNS: tuple[_Pattern, ...] = (
    _Pattern(
        "private_key",
        # The body may not contain "-----", so an unterminated BEGIN costs one
        # scan to the next dashes, not one to the end of the text. The END line
        # is optional: a block cut short (by the sender, or by the size limit
        # before redaction) is hidden up to where it stops.
        re.compile(
            r"-----BEGIN [A-Z ]*PRIVATE KEY-----(?:(?!-----)[\s\S]){0,65536}"
            r"(?:-----END [A-Z ]*PRIVATE KEY-----)?"
        ),
        ("PRIVATE KEY-----",),
        min_length=70,
    ),
    _Pattern(
        "bearer_token",
        re.compile(r"\bBearer[ \t]+(?=[A-Za-z0-9._~+/-]{0,256}\d)[A-Za-z0-9._~+/-]{16,}=*"),
        ("Bearer",),
        min_length=23,
    ),
    _Pattern(
        "jwt",
        re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"),
        ("eyJ",),
        min_length=32,
    ),
    _Pattern(
        "api_key",
        re.compile(r"\bsk-(?=[A-Za-z0-9_-]{0,256}\d)[A-Za-z0-9_-]{20,}"),
        ("sk-",),
        min_length=23,
    ),
    _Pattern(
        "aws_access_key",
        re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b"),
        ("AKIA", "ASIA"),
        min_length=20,
    ),
    _Pattern(
        "github_token",
        re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,})"),
        ("gh",),
        min_length=33,
    ),
    _Pattern(
        "slack_token", re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}"), ("xox",), min_length=15
    ),
    _Pattern(
        "email",
        re.compile(
            r"(?<![\w.%+-])[\w.%+-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
            r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*\.[A-Za-z]{2,}\b"
        ),
        ("@",),
        min_length=6,
    ),
    # Any run of digit groups; _cards decides what in it is a card.
    _Pattern(
        "card",
        re.compile(r"\d(?<!\d\d)(?:[ -]?\d){12,47}(?!\d)"),  # lookbehind after \d: faster scan
        (),
        _digits_or_phones,
        min_length=13,
        min_digits=13,
    ),
    *_PHONE_PATTERNS,
    _Pattern(
        "secret",
        re.compile(r"(?<![A-Za-z0-9+_=-])[A-Za-z0-9+_=-]{32,256}(?![A-Za-z0-9+_=-])"),
        (),
        _random_secret,
        min_length=32,
    ),
)

BUILTIN_KINDS: frozenset[str] = frozenset(pattern.kind for pattern in PATTERNS)
_SHORTEST_MATCH = min(pattern.min_length for pattern in PATTERNS)


_NOT_DIGITS = str.maketrans("", "", "0123456789")


def _apply_all(patterns: Iterable[_Pattern], text: str) -> str:
    # Counted once, up front: redaction only ever removes digits, so the count
    # stays an upper bound for the later patterns.
    digits = len(text) - len(text.translate(_NOT_DIGITS))
    for pattern in patterns:
        if pattern.may_match(text, digits):
            text = pattern.apply(text)
    return text


def redact_builtin(text: str) -> str:
    """``text`` with every built-in pattern replaced by its marker."""
    # Most strings in a message list are roles and part types: skip them at once.
    return _apply_all(PATTERNS, text) if len(text) >= _SHORTEST_MATCH else text


# --- applying redaction --------------------------------------------------------------


class Redactor:
    """Built-in patterns (unless ``builtin=False``) followed by the user's rules, in order.

    Any failure, including a rule that raises or returns something other than a
    string, raises :class:`RedactionError` so the caller drops the content: text
    is never passed on unredacted once redaction was asked for. Each failing
    rule is logged once per Redactor, not once per message.
    """

    def __init__(self, builtin: bool = True, rules: Sequence[Rule] = ()) -> None:
        self.builtin = builtin
        self.rules = tuple(rules)
        self._reported: set[int] = set()

    @property
    def active(self) -> bool:
        return self.builtin or bool(self.rules)

    def text(self, value: str) -> str:
        """Redact one piece of plain text."""
        if self.builtin:
            try:
                value = redact_builtin(value)
            except Exception as exc:  # a bug here must not leak the text
                self._report(-1, "the built-in patterns")
                raise RedactionError("built-in redaction failed") from exc
        for index, rule in enumerate(self.rules):
            try:
                result = rule(value)
            except Exception as exc:
                self._report(index, repr(rule))
                raise RedactionError(f"redaction rule {rule!r} failed") from exc
            if not isinstance(result, str):
                self._report(index, repr(rule), f"returned {type(result).__name__}, not str")
                raise RedactionError(f"redaction rule {rule!r} returned a non-string")
            value = result
        return value

    def value(self, value: Any) -> Any:
        """Redact every string inside a JSON-like structure; mapping keys are kept.

        Values JSON cannot hold are turned into their ``str()`` first, as
        ``json.dumps(default=str)`` would, so nothing reaches the output unredacted.
        """
        return map_strings(value, self.text, stringify=True)

    def json_text(self, text: str) -> str:
        """Redact a string that may hold JSON (a messages attribute) or plain text.

        JSON is parsed so that escapes (``\\n``, ``\\u00e9``) cannot hide a match
        from the patterns, then dumped again only if something changed; any
        other text is redacted as it is.
        """
        stripped = text.lstrip()
        if stripped[:1] in ("[", "{"):
            try:
                parsed = json.loads(text)
            except ValueError:
                parsed = None
            if isinstance(parsed, list | dict):
                redacted = self.value(parsed)
                if redacted == parsed:
                    return text
                return json.dumps(redacted, ensure_ascii=False)
        return self.text(text)

    def _report(self, index: int, what: str, problem: str = "raised") -> None:
        if index in self._reported:
            return
        self._reported.add(index)
        # exc_info only where there is an exception to show.
        logger.warning(
            "tokentrail: redaction with %s %s; content it could not redact is dropped "
            "(logged once)",
            what,
            problem,
            exc_info=problem == "raised",
        )


# --- which attributes carry content ----------------------------------------------------

CONTENT_KEYS: frozenset[str] = frozenset(
    {
        "gen_ai.input.messages",
        "gen_ai.output.messages",
        "gen_ai.system_instructions",
        "gen_ai.prompt",  # deprecated gen_ai.content.prompt event attribute
        "gen_ai.completion",
        "gen_ai.event.content",  # body of deprecated gen_ai.*.message events
        "gen_ai.tool.call.arguments",
        "gen_ai.tool.call.result",
        "gen_ai.evaluation.explanation",  # often quotes the answer it judges
        "input.value",
        "output.value",
        "langfuse.observation.input",
        "langfuse.observation.output",
        "traceloop.entity.input",
        "traceloop.entity.output",
    }
)
"""Attributes (on spans and on events) whose values are prompts, completions or tool I/O."""

CONTENT_PREFIXES: tuple[str, ...] = (
    "gen_ai.prompt.",  # OpenLLMetry indexed gen_ai.prompt.{i}.content
    "gen_ai.completion.",
    "llm.input_messages.",  # OpenInference llm.input_messages.{i}.message.content
    "llm.output_messages.",
    "llm.prompts.",
)


def is_content_key(key: str) -> bool:
    return key in CONTENT_KEYS or key.startswith(CONTENT_PREFIXES)


def redact_attributes(
    attributes: Mapping[str, Any],
    scrub: Callable[[str], str],
    keys: Iterable[str] | None = None,
) -> dict[str, Any] | None:
    """A copy of ``attributes`` with ``scrub`` applied to the content values, or None if
    nothing changed.

    ``keys`` names the attributes to treat (default: the content keys present).
    Strings go through ``scrub``; arrays and maps of strings element by element.
    Content ``scrub`` cannot process (RedactionError) is replaced by the
    ``redaction_failed`` marker: dropped, never passed on.
    """
    chosen = [key for key in attributes if is_content_key(key)] if keys is None else keys
    changed: dict[str, Any] = {}
    for key in chosen:
        original = attributes[key]
        value = scrub_value(original, scrub)
        if value != original:
            changed[key] = value
    return {**attributes, **changed} if changed else None


def scrub_value(value: Any, scrub: Callable[[str], str]) -> Any:
    """``value`` with ``scrub`` applied to every string in it (arrays and maps included);
    the ``redaction_failed`` marker where ``scrub`` raises RedactionError."""
    try:
        return map_strings(value, scrub)
    except RedactionError:
        return marker(FAILED)


def map_strings(value: Any, fn: Callable[[str], str], *, stringify: bool = False) -> Any:
    """``value`` with ``fn`` applied to every string in it, through lists, tuples and
    mappings (whose keys are kept).

    Other objects are kept, or with ``stringify`` (for content about to become
    JSON) replaced by ``fn(str(obj))``, as ``json.dumps(default=str)`` would
    render them: nothing reaches the JSON without passing through ``fn``.
    """
    # Concrete types first: this runs for every part of every recorded message,
    # and the Mapping ABC check is the slow one.
    if isinstance(value, str):
        return fn(value)
    if isinstance(value, dict):
        return {key: map_strings(item, fn, stringify=stringify) for key, item in value.items()}
    if isinstance(value, list):
        return [map_strings(item, fn, stringify=stringify) for item in value]
    if isinstance(value, tuple):
        return tuple(map_strings(item, fn, stringify=stringify) for item in value)
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, Mapping):
        return {key: map_strings(item, fn, stringify=stringify) for key, item in value.items()}
    return fn(str(value)) if stringify else value
