"""Word rules for end of turn: does the transcript so far say the caller has not finished?

Pure functions over text, one table per language. `judge(text, language)` returns a `WordVerdict`:

* `unfinished`, with a reason in words ("ends on the conjunction 'and'", "a number is being spelled:
  4 digits so far after 'phone'") — the caller is mid-sentence, or asked for time ("hold on", "um");
* `no_opinion` — nothing in the words says so (it never says "finished": only the audio and the silence
  decide that). Its reason says why a rule did not fire when that is informative ("a question can end
  on 'for'").

The rules are deliberately one-sided: a wrong `unfinished` costs waiting up to the policy's
`max_silence_ms`; a wrong `no_opinion` leaves the decision to the audio model. So each rule fires only on
endings that are (nearly) never the end of an English turn, with exceptions for the common cases where
they are: stranded prepositions in questions ("Who am I speaking with?"), phrasal verbs ("Please log me
in"), letters after nouns ("Plan A"), numbers whose length looks complete ("zip code 9 4 1 0 3").

Transcripts come from STT engines that add punctuation (Whisper ends a cut sentence with "." too), so
final full stops and question marks are ignored; a trailing comma, dash or ellipsis counts as trailing off.

Other languages: build a `LanguageRules` with that language's words and `register()` it; the procedure is
the same. Only English ships.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

Kind = Literal["unfinished", "no_opinion"]


@dataclass(frozen=True)
class WordVerdict:
    """What the words say: `kind`, a `reason` in words, and the `rule` that decided (machine-readable)."""

    kind: Kind
    reason: str = ""
    rule: str = ""

    @property
    def unfinished(self) -> bool:
        return self.kind == "unfinished"


def unfinished(reason: str, rule: str) -> WordVerdict:
    return WordVerdict("unfinished", reason, rule)


def no_opinion(reason: str = "", rule: str = "") -> WordVerdict:
    return WordVerdict("no_opinion", reason, rule)


def _phrases(*items: str) -> frozenset[tuple[str, ...]]:
    return frozenset(tuple(item.split()) for item in items)


@dataclass(frozen=True)
class LanguageRules:
    """The word lists for one language. Phrases are tuples of lower-case words."""

    code: str
    #: single words that never end a turn: "um", "uh"
    fillers: frozenset[str]
    #: phrases that ask for time when they make up the last clause: "hold on", "one moment"
    pause_phrases: frozenset[tuple[str, ...]]
    #: words that may follow a pause phrase without changing it: "a", "second", "please"
    courtesy: frozenset[str]
    #: words that may precede it in the same clause: "oh", "okay", "sorry"
    interjections: frozenset[str]
    #: phrase openings that ask for time: ("let", "me") + one of `thinking_verbs`
    thinking_openers: frozenset[tuple[str, ...]]
    thinking_verbs: frozenset[str]
    conjunctions: frozenset[str]
    conjunction_phrases: frozenset[tuple[str, ...]]
    #: conjunctions that make an open list when the clause holds a comma: "and", "or"
    list_conjunctions: frozenset[str]
    prepositions: frozenset[str]
    #: prepositions that are also verb particles ("log in", "turn it on")
    particles: frozenset[str]
    particle_verbs: frozenset[str]
    object_pronouns: frozenset[str]
    #: words that make a clause a question or a relative clause, where a preposition may end it
    question_words: frozenset[str]
    #: words after which "to" is an ellipsis that can end a turn: "I don't want to"
    to_ellipsis: frozenset[tuple[str, ...]]
    determiners: frozenset[str]
    #: nouns after which a lone letter is a name, not an article: "plan a", "gate a"
    letter_nouns: frozenset[str]
    #: contractions and subjects that cannot end a clause: "it's", "i'm", "i"
    dangling: frozenset[str]
    #: nouns that, followed by "is"/"was"/"are", announce something still to come: "my number is"
    announcing_nouns: frozenset[str]
    copulas: frozenset[str]
    #: digit words -> how many digits they stand for ("double" is handled as a multiplier)
    digit_words: dict[str, int]
    digit_multipliers: dict[str, int]
    #: words that say a number follows -> the digit counts that look complete (empty: never looks complete)
    number_cues: dict[str, tuple[int, ...]]
    #: how far back (in words) before the digits a cue may be
    cue_reach: int = 6
    extra: dict[str, str] = field(default_factory=dict)
    #: phrases after which a question word opens a question still to come: "tell me" + "when"
    embedded_openers: frozenset[tuple[str, ...]] = frozenset()
    embedded_words: frozenset[str] = frozenset()
    #: question words that allow a final preposition only with words between them and it ("someone to
    #: talk to", but not "talk to someone about")
    indefinite_pronouns: frozenset[str] = frozenset()


_EN_DIGITS = {w: 1 for w in ("zero", "oh", "o", "one", "two", "three", "four", "five", "six", "seven",
                              "eight", "nine", "niner")}

EN = LanguageRules(
    code="en",
    fillers=frozenset({"um", "uh", "umm", "uhh", "uhm", "er", "erm", "err", "hmm", "hm", "mm", "mmm", "ah",
                       "eh"}),
    pause_phrases=_phrases(
        "hold on", "hang on", "wait", "wait up", "one moment", "one second", "one sec", "one minute",
        "just a moment", "just a second", "just a sec", "just a minute", "give me a second",
        "give me a moment", "give me a minute", "give me a sec", "bear with me", "let me think",
        "let me see", "a moment", "a second", "moment please", "i'm thinking", "thinking",
    ),
    courtesy=frozenset({"a", "one", "just", "second", "sec", "moment", "minute", "bit", "please", "for",
                        "me", "there", "now"}),
    interjections=frozenset({"oh", "ok", "okay", "yes", "yeah", "yep", "sorry", "uh", "um", "so", "and",
                             "but", "actually", "well", "sure", "right", "hmm", "er", "erm", "no"}),
    thinking_openers=_phrases("let me", "lemme", "let's"),
    thinking_verbs=frozenset({"think", "see", "check", "look", "find", "get", "grab", "pull", "remember",
                              "figure"}),
    conjunctions=frozenset({"and", "or", "but", "because", "cause", "'cause", "cuz", "if", "unless",
                            "although", "whereas", "whether", "than", "plus", "nor", "as", "until", "till"}),
    conjunction_phrases=_phrases("so that", "and then", "but then", "or else", "and also", "such as",
                                 "as well as", "rather than", "even though", "as if", "as though",
                                 "in case", "except that", "think that"),
    list_conjunctions=frozenset({"and", "or"}),
    prepositions=frozenset({"for", "to", "from", "with", "of", "at", "about", "into", "onto", "towards",
                            "toward", "between", "via", "per", "without", "during", "within", "upon",
                            "on", "in", "by", "through", "around", "like"}),
    particles=frozenset({"on", "in", "by", "through", "around", "over"}),
    particle_verbs=frozenset({
        "hold", "go", "going", "come", "coming", "came", "carry", "log", "logged", "sign", "signed", "check",
        "checked", "checking", "plug", "plugged", "turn", "turned", "switch", "switched", "put", "try",
        "tried", "move", "moved", "moving", "drop", "dropped", "stop", "stopped", "get", "got", "getting",
        "later", "so", "now", "right", "spot", "pass", "passed", "walk", "walked", "stay", "stayed", "hang",
        "pop", "popped", "fill", "filled", "hand", "handed", "break", "broke", "opt", "opted", "jump",
        "dial", "dialed", "dialled", "call", "called", "calling", "fall", "fell", "look", "looking",
        "keep", "kept", "be", "been", "is", "was", "are", "i'm", "were", "pull", "pulled", "run", "ran",
        "went", "gone", "let", "bring", "brought", "send", "sent", "count", "way", "and",
    }),
    object_pronouns=frozenset({"it", "them", "him", "her", "me", "us", "you", "this", "that", "these",
                               "those", "one"}),
    question_words=frozenset({"who", "whom", "what", "where", "which", "whose", "how", "what's", "who's",
                              "where's", "whatever", "whoever", "wherever", "anyone", "anybody",
                              "someone", "somebody", "something", "anything"}),
    indefinite_pronouns=frozenset({"anyone", "anybody", "someone", "somebody", "something", "anything"}),
    to_ellipsis=_phrases("want to", "need to", "have to", "has to", "had to", "like to", "love to",
                         "going to", "got to", "used to", "supposed to", "meant to", "ought to",
                         "able to", "try to", "tried to", "plan to", "hope to", "mean to", "agree to",
                         "refuse to", "forgot to"),
    determiners=frozenset({"the", "a", "an", "my", "your", "our", "their", "its", "every", "very"}),
    letter_nouns=frozenset({"plan", "option", "type", "class", "grade", "section", "part", "vitamin",
                            "building", "gate", "terminal", "row", "seat", "level", "floor", "apartment",
                            "unit", "suite", "room", "box", "block", "wing", "zone", "tier", "group",
                            "letter", "choice", "number", "platform", "hall", "bay", "lot", "team"}),
    dangling=frozenset({"i", "i'm", "i'd", "i'll", "i've", "we're", "we'd", "we'll", "we've", "you're",
                        "you'd", "you'll", "you've", "they're", "they'd", "they'll", "they've", "it's",
                        "that's", "there's", "here's", "he's", "she's", "what's", "where's", "who's",
                        "how's", "let's", "there're"}),
    announcing_nouns=frozenset({"number", "name", "address", "email", "e-mail", "code", "problem",
                                "question", "reason", "issue", "thing", "date", "birthday", "account",
                                "postcode", "zip", "password", "pin", "surname", "id", "reference",
                                "extension", "phone", "cell", "mobile", "order", "policy", "plate",
                                "idea", "point", "situation", "answer", "street", "city", "spelling"}),
    copulas=frozenset({"is", "was", "are", "were", "'s", "being"}),
    digit_words=_EN_DIGITS,
    digit_multipliers={"double": 2, "triple": 3},
    embedded_openers=_phrases("tell me", "tell us", "show me", "show us", "remind me", "ask you", "wondering",
                              "find out", "explain"),
    embedded_words=frozenset({"when", "where", "what", "how", "why", "who", "which", "whether"}),
    number_cues={
        "phone": (10, 11), "telephone": (10, 11), "cell": (10, 11), "mobile": (10, 11), "callback": (10, 11),
        "zip": (5, 9), "postcode": (), "pin": (4, 6), "card": (15, 16), "extension": (),
        "number": (), "account": (), "order": (), "reference": (), "code": (), "confirmation": (),
        "policy": (), "id": (), "ssn": (9,), "social": (9,), "routing": (9,), "member": (),
        "is": (), "it's": (), "at": (10, 11), "on": (10, 11),
    },
)

RULES: dict[str, LanguageRules] = {"en": EN}


def register(rules: LanguageRules) -> None:
    """Add or replace the rules for `rules.code` (a primary language subtag: "en", "de", …)."""
    RULES[rules.code] = rules


def rules_for(language: str | None) -> LanguageRules | None:
    """The rules for a language code such as "en", "en-US", "en_GB" (None: English)."""
    code = (language or "en").replace("_", "-").split("-")[0].lower()
    return RULES.get(code)


# --- text ------------------------------------------------------------------------------------

_TRAILING_OFF = re.compile(r"(\.\.\.|…|,|-|–|—)\s*$")
_END_PUNCT = " \t\n.!?…,;:-–—\"'()[]"
_CLAUSE_BREAK = re.compile(r"[.!?;:,…—–]|\s-\s")
_DIGIT_GROUPS = re.compile(r"(?<=\d)[-. ()/](?=\d)")
_TOKEN = re.compile(r"\d+|[^\W\d_]+(?:'[^\W\d_]+)?|'[^\W\d_]+")  # words in any script


def _normalise(text: str) -> str:
    text = text.lower().replace("\u2019", "'").replace("\u2018", "'")
    return _DIGIT_GROUPS.sub(" ", text)


def _tokens(text: str) -> list[str]:
    return _TOKEN.findall(text)


def _last_clause(body: str) -> list[str]:
    parts = _CLAUSE_BREAK.split(body)
    for part in reversed(parts):
        tokens = _tokens(part)
        if tokens:
            return tokens
    return []


def _ends_with(tokens: list[str], phrases: frozenset[tuple[str, ...]]) -> tuple[str, ...] | None:
    for phrase in sorted(phrases, key=len, reverse=True):
        if len(tokens) >= len(phrase) and tuple(tokens[-len(phrase):]) == phrase:
            return phrase
    return None


# --- rules -----------------------------------------------------------------------------------

def judge(text: str, language: str | None = "en") -> WordVerdict:
    """What the transcript so far says about the turn (see the module docstring)."""
    rules = rules_for(language)
    if rules is None:
        return no_opinion(f"no word rules for language {language!r}", "language")
    raw = (text or "").strip()
    normal = _normalise(raw)
    body = normal.rstrip(_END_PUNCT)
    tokens = _tokens(body)
    if not tokens:
        return no_opinion("nothing said yet", "empty")
    clause = _last_clause(body)
    for rule in (_filler, _asks_for_time, _number, _announces, _dangling, _embedded_question, _open_list,
                 _conjunction, _preposition, _determiner):
        verdict = rule(rules, tokens, clause, body)
        if verdict is not None:
            return verdict
    trail = _TRAILING_OFF.search(normal)
    if trail:
        return unfinished(f"trails off on '{trail.group(1)}'", "trailing_punctuation")
    return no_opinion()


_ACKNOWLEDGEMENT = re.compile(r"(?:^|\s)(?:mm+-?hm+|uh-huh|mhm)\W*$")  # "mm-hm" agrees; it is no filler


def _filler(rules: LanguageRules, tokens: list[str], clause: list[str], body: str) -> WordVerdict | None:
    if tokens[-1] in rules.fillers and not _ACKNOWLEDGEMENT.search(body):
        return unfinished(f"ends on the filler '{tokens[-1]}'", "filler")
    return None


def _strip_interjections(rules: LanguageRules, clause: list[str]) -> list[str]:
    i = 0
    while i < len(clause) - 1 and clause[i] in rules.interjections:
        i += 1
    return clause[i:]


def _asks_for_time(rules: LanguageRules, tokens: list[str], clause: list[str], body: str) -> WordVerdict | None:
    if clause and all(word in rules.courtesy for word in clause):
        # "Hold on, please.": the courtesy words after the comma belong to the clause before
        earlier = [_tokens(part) for part in _CLAUSE_BREAK.split(body)]
        earlier = [part for part in earlier if part]
        if len(earlier) >= 2:
            clause = earlier[-2] + clause
    core = _strip_interjections(rules, clause)
    # a pause phrase, possibly followed by courtesy words: "hold on a second please"
    for cut in range(len(core), 0, -1):
        head, tail = core[:cut], core[cut:]
        if all(word in rules.courtesy for word in tail) and tuple(head) in rules.pause_phrases:
            return unfinished(f"'{' '.join(head)}' asks for time", "pause_phrase")
    for opener in rules.thinking_openers:
        n = len(opener)
        if tuple(core[:n]) == opener and len(core) > n and core[n] in rules.thinking_verbs:
            return unfinished(f"'{' '.join(core[: n + 1])}' asks for time", "thinking")
    return None


def _digit_run(rules: LanguageRules, tokens: list[str]) -> tuple[int, int]:
    """(number of digits, index where the run starts) of the digits ending `tokens`."""
    count, i = 0, len(tokens)
    if tokens and tokens[-1] in ("o", "oh") and not (len(tokens) > 1 and _is_digit(rules, tokens[-2])):
        return 0, i  # a lone final "oh" is an interjection, not a zero
    while i > 0:
        word = tokens[i - 1]
        if word.isdigit():
            count += len(word)
        elif word in rules.digit_words:
            count += rules.digit_words[word]
        elif word in rules.digit_multipliers and count:
            count += rules.digit_multipliers[word] - 1  # "double five": the five counted once already
        elif word in ("dash", "hyphen") and count:
            pass
        else:
            break
        i -= 1
    return count, i


def _is_digit(rules: LanguageRules, word: str) -> bool:
    return word.isdigit() or word in rules.digit_words


_GENERIC_CUES = frozenset({"is", "it's", "at", "on"})


def _number(rules: LanguageRules, tokens: list[str], clause: list[str], body: str) -> WordVerdict | None:
    count, start = _digit_run(rules, tokens)
    if count == 0:
        return None
    if count == 1 and len(tokens) - start == 1 and not tokens[-1].isdigit():
        # a single number word ("for two", "at five") is a quantity or a time, not spelling
        before = tokens[max(0, start - 2): start]
        if not any(w in ("is", "number", "phone") for w in before):
            return None
    window = [w for w in tokens[max(0, start - rules.cue_reach): start] if w in rules.number_cues]
    if not window:
        return None
    named = [w for w in reversed(window) if w not in _GENERIC_CUES]
    if named:
        # the most specific cue: one whose complete lengths are known ("phone" over "number")
        cue = next((w for w in named if rules.number_cues[w]), named[0])
    elif count >= 5:
        cue = window[-1]  # "it's 5 5 5 1 2": dictation; "at 10 30", "it's 2025" are not
    else:
        return None
    complete = rules.number_cues[cue]
    if count in complete:
        return no_opinion(f"a number of {count} digits after '{cue}' looks complete", "number_complete")
    return unfinished(f"a number is being spelled: {count} digit{'s' if count != 1 else ''} so far after "
                      f"'{cue}'", "number")


def _announces(rules: LanguageRules, tokens: list[str], clause: list[str], body: str) -> WordVerdict | None:
    last = tokens[-1]
    if (last in rules.copulas and len(tokens) >= 2 and tokens[-2] in rules.announcing_nouns
            and not _asks_what(rules, clause[:-2])):
        start = len(tokens) - 2
        while start > 0 and len(tokens) - start < 5 and tokens[start - 1] in (
            rules.determiners | rules.announcing_nouns | {"e", "last", "first", "full", "home", "work"}
        ):
            start -= 1
        return unfinished(f"ends on '{' '.join(tokens[start:])}': what it announces is still to come",
                          "announcement")
    if (last == "that" and len(tokens) >= 3 and tokens[-2] in rules.copulas
            and tokens[-3] in rules.announcing_nouns):
        return unfinished(f"ends on '{' '.join(tokens[-3:])}': what it announces is still to come",
                          "announcement")
    if len(last) > 2 and last.endswith("'s") and last[:-2] in rules.announcing_nouns:
        return unfinished(f"ends on '{last}': what it announces is still to come", "announcement")
    if last in rules.copulas and _opens_with_announcing_noun(rules, clause):
        # "the reason I'm calling is", "my date of birth is": the subject announced something to come
        return unfinished(f"'{' '.join(clause[:3])} … {last}' announces something still to come", "announcement")
    return None


def _asks_what(rules: LanguageRules, words: list[str]) -> bool:
    """A question word makes the copula the end of an embedded question: "I know what the problem is"."""
    return any(word in rules.embedded_words for word in words)


def _opens_with_announcing_noun(rules: LanguageRules, clause: list[str]) -> bool:
    """The clause's subject is a determiner + announcing noun ("the reason", "my date") and nothing in it
    makes it a question ("what the problem is")."""
    core = _strip_interjections(rules, clause)
    if len(core) < 3 or len(core) > 12 or core[0] not in rules.determiners:
        return False
    if core[1] not in rules.announcing_nouns and not (len(core) > 3 and core[2] in rules.announcing_nouns):
        return False
    return not _asks_what(rules, core)


def _dangling(rules: LanguageRules, tokens: list[str], clause: list[str], body: str) -> WordVerdict | None:
    last = tokens[-1]
    if last in rules.dangling:
        what = "the subject" if last == "i" else "the contraction"
        return unfinished(f"ends on {what} '{last}'", "dangling")
    return None


def _embedded_question(rules: LanguageRules, tokens: list[str], clause: list[str],
                       body: str) -> WordVerdict | None:
    if len(tokens) < 2 or tokens[-1] not in rules.embedded_words:
        return None
    opener = _ends_with(tokens[:-1], rules.embedded_openers)
    if opener is None:
        return None
    return unfinished(f"'{' '.join([*opener, tokens[-1]])}' opens a question still to come", "embedded_question")


def _open_list(rules: LanguageRules, tokens: list[str], clause: list[str], body: str) -> WordVerdict | None:
    last = tokens[-1]
    if last not in rules.list_conjunctions:
        return None
    sentence = re.split(r"[.!?;:]", body)[-1]
    items = [p for p in (_tokens(x) for x in sentence.split(",")) if p]
    if len(items) < 2:
        return None
    shown = [item[-1] for item in items[:-1]][-2:]
    tail = items[-1][:-1]
    if tail:
        shown.append(" ".join(tail[-2:]))
        text = ", ".join(shown) + f" {last}"
    else:
        text = ", ".join(shown) + f", {last}"
    return unfinished(f"an open list ('{text}')", "open_list")


def _conjunction(rules: LanguageRules, tokens: list[str], clause: list[str], body: str) -> WordVerdict | None:
    phrase = _ends_with(tokens, rules.conjunction_phrases)
    if phrase is not None:
        return unfinished(f"ends on '{' '.join(phrase)}'", "conjunction")
    last = tokens[-1]
    if last in rules.conjunctions:
        if last == "if" and len(tokens) >= 2 and tokens[-2] == "what":
            return no_opinion("'what if' can end a question", "question")
        return unfinished(f"ends on the conjunction '{last}'", "conjunction")
    if last == "since":
        before = tokens[-2] if len(tokens) >= 2 else ""
        negated = any(w in ("not", "never", "no") or w.endswith("n't") for w in clause)
        if before in ("ever", "long") or before in rules.object_pronouns or negated:
            return no_opinion(f"'{before} since' can end a sentence", "adverb")
        return unfinished("ends on 'since': the time it counts from is still to come", "conjunction")
    return None


def _is_question(rules: LanguageRules, clause: list[str]) -> bool:
    """A question or relative clause, where a preposition may end the clause (`clause` without it)."""
    for i, word in enumerate(clause):
        if word in rules.question_words and not (word in rules.indefinite_pronouns and i == len(clause) - 1):
            return True
    return False


def _preposition(rules: LanguageRules, tokens: list[str], clause: list[str], body: str) -> WordVerdict | None:
    last = tokens[-1]
    if last not in rules.prepositions:
        return None
    before = tokens[-2] if len(tokens) >= 2 else ""
    if last in rules.particles and (before in rules.particle_verbs or before in rules.object_pronouns):
        return no_opinion(f"'{before} {last}' can end a sentence", "particle")
    if last == "to" and _ends_with(tokens, rules.to_ellipsis) and (
        any(w in ("not", "don't", "doesn't", "didn't", "won't", "wouldn't", "can't", "never", "you", "we")
            for w in tokens[-5:-2])
    ):
        return no_opinion(f"'{' '.join(tokens[-3:])}' can end a sentence", "ellipsis")
    if _is_question(rules, clause[:-1]):
        return no_opinion(f"a question can end on '{last}'", "question")
    return unfinished(f"ends on the preposition '{last}'", "preposition")


def _determiner(rules: LanguageRules, tokens: list[str], clause: list[str], body: str) -> WordVerdict | None:
    last = tokens[-1]
    if last not in rules.determiners:
        return None
    before = tokens[-2] if len(tokens) >= 2 else ""
    if last == "a" and before in rules.letter_nouns:
        return no_opinion(f"'{before} {last}' names something", "letter")
    if last == "very":
        if before in ("not", "the"):  # "not very", "the very": can end a sentence
            return None
        return unfinished("ends on 'very': the word it qualifies is missing", "determiner")
    kind = "article" if last in ("the", "a", "an") else "word"
    return unfinished(f"ends on the {kind} '{last}': the word it belongs to is missing", "determiner")
