"""What a prompt is about, in a few of its own words, for the report's title and first paragraph.

A model asked for "a history of canals" writes about canals; a simulator that titles it "The
Mountain Pass" looks broken to anyone trying it. Full understanding is not needed: the topic is
the prompt's first clause with the request around it peeled off (``Write a long report on``,
``about 5,000 words``, ``please``), at most :data:`MAX_WORDS` words, so that "Write a long-form
report, about 5,000 words, on how rivers shape the land: erosion, …" gives "how rivers shape
the land" (titled "How Rivers Shape the Land"), and "A history of canals" gives "the history of
canals", which reads in a sentence. A prompt with nothing left (``"Go on."``) has no topic,
and the report keeps the bank's titles.
"""

from __future__ import annotations

import re

MAX_WORDS = 8

_REQUEST = frozenset(
    """write writing draft compose produce create give generate prepare make tell explain describe
    me us please could can would you go continue keep going i want need kindly a an the some my
    our this that long short
    detailed thorough brief comprehensive full in-depth long-form longform extended lengthy
    report essay article overview summary piece paper account document text story
    about on of regarding concerning covering into for around approximately roughly nearly
    words word pages page paragraphs paragraph tokens sections""".split()
)
"""Words of the request itself, peeled off the ends of the topic phrase."""

_CLAUSES = re.compile(r"[.:;!?\n()\[\]\"“”]|, ")
_WORD = re.compile(r"[\w'’/-]+")
_SMALL = frozenset("a an and as at by for from in into of on or the to with vs".split())


def topic_of(prompt: str) -> str:
    """The topic of ``prompt`` as the prompt words it, or ``""`` when it names none."""
    for clause in _CLAUSES.split(prompt):
        words = _WORD.findall(clause)
        article = False
        while words and _peeled(words[0]):
            article = words.pop(0).lower() in ("a", "an", "the")
        del words[MAX_WORDS:]
        while words and (_peeled(words[-1]) or words[-1].lower() in _SMALL):
            words.pop()
        if words:
            return " ".join(["the", *words] if article else words)
    return ""


def title_case(topic: str) -> str:
    """``topic`` as a heading: small words lower case, acronyms and brands as written."""
    return " ".join(_title_case(word, first=i == 0) for i, word in enumerate(topic.split()))


def _peeled(word: str) -> bool:
    return word.lower() in _REQUEST or word.isdigit()


def _title_case(word: str, *, first: bool) -> str:
    if not first and word.lower() in _SMALL:
        return word.lower()
    if any(c.isupper() for c in word[1:]):
        return word  # an acronym or a brand: HTTP, iPhone
    return word[:1].upper() + word[1:]
