"""Overlap removal and whitespace reconciliation: the pure rules of ``pipeline.source._overlap``."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.source._overlap import drop_repeated, fold, restated_end

SENT = "Latency rose at noon. Requests queued behind the lock, and the p99 dropped after the conf"


def continued(sent: str, head: str) -> str:
    """The text a continue turn adds after ``sent``, as the stitcher emits it."""
    rest = head[restated_end(sent, head) :]
    return drop_repeated(sent[len(sent.rstrip()) :], rest)[1]


@pytest.mark.parametrize(
    ("sent", "head", "expected"),
    [
        pytest.param(
            SENT,
            "the p99 dropped after the configuration was rolled back.",
            "iguration was rolled back.",
            id="restated-partial-word",
        ),
        pytest.param(
            "The cache warmed slowly. Requests queued behind the",
            "Requests queued behind the lock until the timeout fired.",
            " lock until the timeout fired.",
            id="restated-sentence",
        ),
        pytest.param(
            SENT,
            "Sure, continuing: the lock, and the p99 dropped after the configuration change.",
            "iguration change.",
            id="preamble-and-restatement",
        ),
        pytest.param(SENT, "iguration was rolled back.", "iguration was rolled back.", id="seamless"),
        pytest.param(
            SENT,
            SENT + "iguration was rolled back, and the queue drained.",
            "iguration was rolled back, and the queue drained.",
            id="full-restart",
        ),
        pytest.param(
            SENT,
            "Let me start again. At noon latency went up and requests waited on a lock.",
            "Let me start again. At noon latency went up and requests waited on a lock.",
            id="reworded-restart-kept",
        ),
    ],
)
def test_reference_cases(sent: str, head: str, expected: str) -> None:
    """The six cases of reference §2.3 step 4(b)."""
    assert continued(sent, head) == expected


@pytest.mark.parametrize(
    ("sent", "head", "expected"),
    [
        pytest.param(
            "We deployed the new plugin ", "in production.", "in production.", id="suffix-of-a-word"
        ),
        pytest.param("The data is kept", " in memory.", " in memory.", id="seamless-after-whole-word"),
        pytest.param("The data is stored in", "in memory.", " memory.", id="restated-short-word"),
        pytest.param(
            "Ellipses are common in", " in-house style.", " in-house style.", id="doubled-word-kept"
        ),
        pytest.param("He saw a", "ardvark.", "ardvark.", id="cut-word-not-trimmed"),
        pytest.param("after the rema", "remarkable floods", "rkable floods", id="restated-cut-word"),
        pytest.param(
            "We saw the rema", "the remarkable floods", "rkable floods", id="restated-words-and-cut-word"
        ),
        pytest.param("The data is stored in", "inner pages.", "inner pages.", id="short-cut-word-kept"),
        pytest.param("I'", "I'll look that up.", "ll look that up.", id="restated-cut-at-punctuation"),
        pytest.param("the river ", "the river\n\nThe next", "\n\nThe next", id="restated-then-break"),
        pytest.param(
            "Years:\n- **", "- **The Northern Years**", "The Northern Years**", id="restated-list-marker"
        ),
        pytest.param("| a | 12 |\n", "| b | 3 |", "| b | 3 |", id="table-pipe-kept"),
        pytest.param("Steppe\n\n#", "## The Role", "# The Role", id="restated-heading-marker"),
        pytest.param("Steppe\n\n#", "# The Role", "# The Role", id="seamless-heading-marker"),
    ],
)
def test_short_words(sent: str, head: str, expected: str) -> None:
    """Short overlaps are removed only when whole words or punctuation-cut words are restated."""
    assert continued(sent, head) == expected


def test_a_restatement_cut_short_is_dropped_when_it_is_all_there_is() -> None:
    """A continuation whose ``max_tokens`` ran out mid-restatement adds nothing; while more may
    come, the same head is kept (it could still turn out to be new text)."""
    sent = "The surveys were steady. Most of the instruments throughout the province"
    head = "of the instruments throughout the provi"
    assert restated_end(sent, head, final=True) == len(head)
    assert restated_end(sent, head) == 0
    assert restated_end(sent, " recorded the broad boundaries.", final=True) == 0
    assert restated_end(sent, "the instru", final=True) == 0  # too short to tell


def test_a_phrase_recurring_later_is_not_an_anchor() -> None:
    """Templated prose repeats 32-char phrases: an anchor must be explained by what precedes it."""
    sent = "The harvests shaped the mills. Historians still debate whether"
    later = " the families encouraged the lighthouse or merely attracted it." * 8
    head = "whether the harvests shaped the postal service." + later + " Historians still debate whether it"
    assert continued(sent, head) == head[len("whether") :]


def test_reopened_fence_is_dropped() -> None:
    """A fence line reopening the code block the partial is inside goes, with the restated code."""
    sent = "Here it is:\n\n```python\ndef area(radius):\n    return 3.14159 * radius"
    head = "```python\ndef area(radius):\n    return 3.14159 * radius ** 2\n```\n"
    assert continued(sent, head) == " ** 2\n```\n"


def test_closing_fence_is_kept() -> None:
    """A bare fence right after code is the block's end, not a reopening."""
    sent = "Here:\n\n```\nls -l\n"
    assert continued(sent, "```\n\nThat lists the files.") == "```\n\nThat lists the files."


def test_restated_table_header_is_dropped() -> None:
    """A table header and separator restated at the head's start go; the new rows stay."""
    sent = "Results:\n\n| city | rain |\n|------|------|\n| Oslo | 12 |\n"
    head = "| city | rain |\n|------|------|\n| Rome | 3 |\n"
    assert continued(sent, head) == "| Rome | 3 |\n"


def test_fold_maps_back_to_raw_offsets() -> None:
    """Whitespace runs fold to one space, case folds, and each folded char knows its raw offset."""
    folded, index = fold("A  b\n\nC")
    assert folded == "a b c"
    assert index == [0, 1, 3, 4, 6]


@pytest.mark.parametrize(
    ("sent", "text", "expected"),
    [
        pytest.param("\n\n", "\n\nThe", ("", "The"), id="paragraph-repeated"),
        pytest.param("\n", "\n\nThe", ("", "\nThe"), id="extra-newline-kept"),
        pytest.param("\n\n", "\n", ("\n", ""), id="split-across-deltas"),
        pytest.param(" ", "word", ("", "word"), id="no-leading-whitespace"),
        pytest.param("", " word", ("", " word"), id="nothing-sent"),
        pytest.param("\n\n", " word", ("", " word"), id="different-whitespace-kept"),
    ],
)
def test_whitespace_reconciliation(sent: str, text: str, expected: tuple[str, str]) -> None:
    """Only the common prefix of the sent whitespace and the continuation is dropped."""
    assert drop_repeated(sent, text) == expected


@given(
    st.text(alphabet=st.sampled_from("ab \n\t."), min_size=1, max_size=60),
    st.data(),
)
def test_prefill_join_is_exact(full: str, data: st.DataObject) -> None:
    """Cut anywhere, rstrip for prefill, continue with the true rest in any deltas: the text is whole."""
    cut = data.draw(st.integers(0, len(full)))
    sent = full[:cut]
    stripped = sent.rstrip()
    rest = full[len(stripped) :]
    splits = sorted(data.draw(st.lists(st.integers(0, len(rest)), max_size=4)))
    pending, out = sent[len(stripped) :], []
    for start, end in zip([0, *splits], [*splits, len(rest)], strict=True):
        pending, piece = drop_repeated(pending, rest[start:end])
        out.append(piece)
    assert sent + "".join(out) == full


def test_a_phrase_recurring_two_sentences_on_is_not_a_restatement() -> None:
    """Seamless prose repeating the tail's phrase 185 chars later is kept whole (found by the fault sweep)."""
    sent = "(roughly 400 of them) reorganised the mountain pass. Records on the northern shore suggest that"
    head = (
        " the overlooked ledgers partly protected the warehouses. At the same time, the letters and the"
        " pilgrims redirected the textile mill together.\n\nRecords on the northern shore suggest that the"
        " uneven pilgrims briefly challenged the schools."
    )
    assert continued(sent, head) == head
