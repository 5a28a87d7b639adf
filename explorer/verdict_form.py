"""The verdict form: a historian records what they conclude about a pair, under what they were shown.

:func:`verdict_form` is drawn at the end of the Explain page: a label (same / partial / related / different), the
"right for the wrong reason" flag with the explanation's region pairs it concerns (ranks of the table above it),
a note, the reviewer's name (remembered for the browser session), and the pair's verdict history. Recording again
is how a verdict is changed: the new one supersedes the reviewer's previous one, which stays in the history
(:mod:`corpus_index.verdicts`). :func:`verdict_popover` is the same, smaller, for a Neighbours card.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from corpus_index import verdicts
from explorer import errors, resources

REVIEWER = "verdict_reviewer"  # session key (not a widget's, so it outlives the page that set it)
HISTORY_COLUMNS = ["id", "created_at", "reviewer", "label", "wrong_reason", "regions", "note", "model_key", "gamma",
                   "pool", "score", "superseded_by", "stale"]


def _label_text(label: str) -> str:
    return f"{label} — {verdicts.LABEL_HELP[label]}"


def _record(pair, label, wrong_reason, regions, note, reviewer, model, gamma, pool, score) -> int | None:
    """Record a verdict from the form (the reviewer remembered); None, with the reason shown, when incomplete."""
    if label is None:
        st.warning("Choose a verdict (same, partial, related or different) first.")
        return None
    if not str(reviewer or "").strip():
        st.warning("Enter your name: every verdict says who made it.")
        return None
    st.session_state[REVIEWER] = reviewer.strip()
    with errors.shown("Recording the verdict"):
        return verdicts.record(resources.corpus().store, pair[0], pair[1], label, reviewer, wrong_reason=wrong_reason,
                               regions=regions, note=note, model_key=model, gamma=gamma, pool=pool, score=score)
    return None


def verdict_form(pair, model: str, explanation, pool: int, table: pd.DataFrame) -> None:
    """The verdict form and history of ``pair`` on the Explain page (widget keys ``ex_verdict_*``).

    Parameters
    ----------
    pair : (int, int)
        The two item ids.
    model : str
        The model key of the explanation shown.
    explanation : corpus_index.explanation.Explanation
        What was shown: its γ schedule and score are recorded with the verdict.
    pool : int
        The patch size shown.
    table : pandas.DataFrame
        The explanation's table of patch pairs (its ``rank`` column offers the region pairs).
    """
    st.subheader("Your verdict on this pair")
    with st.form("ex_verdict_form", clear_on_submit=False):
        label = st.radio("These two items are", verdicts.LABELS, index=None, format_func=_label_text,
                         key="ex_verdict_label", horizontal=True)
        wrong = st.checkbox("Right for the wrong reason: the similarity rests on something other than the content "
                            "(page frame, rules, headings …)", key="ex_verdict_wrong")
        ranks = [int(r) for r in table["rank"]] if "rank" in table.columns else []
        regions = st.multiselect("Region pairs the wrong reason lies in (ranks in the table above; optional)", ranks,
                                 key="ex_verdict_regions")
        note = st.text_area("Note (optional)", key="ex_verdict_note", height=68)
        reviewer = st.text_input("Your name", value=st.session_state.get(REVIEWER, ""), key="ex_verdict_reviewer")
        submitted = st.form_submit_button("Record the verdict", type="primary")
    if submitted:
        recorded = _record(pair, label, wrong, regions if wrong else [], note, reviewer, model, explanation.gamma,
                           pool, explanation.score)
        if recorded is not None:
            st.success(f"Verdict {recorded} recorded: items {min(pair)} and {max(pair)} are {label}"
                       f"{' (wrong reason)' if wrong else ''}.")
    show_history(pair)


def show_history(pair) -> None:
    """The verdicts on a pair, newest first (superseded ones marked), or a line saying there are none."""
    with errors.shown("Reading the verdicts"):
        past = verdicts.history(resources.corpus().store, pair[0], pair[1])
        if past.empty:
            st.caption("No verdicts on this pair yet.")
            return
        current = past[past["superseded_by"].isna()]
        summary = ", ".join(f"{row.reviewer}: {row.label}" for row in current.itertuples())
        st.caption(f"Current verdicts — {summary}. A new verdict by the same reviewer replaces theirs; "
                   "the history below keeps every one.")
        st.dataframe(past[HISTORY_COLUMNS].iloc[::-1], hide_index=True)


def verdict_popover(pair, model: str, score: float | None, key: str) -> None:
    """A small verdict form in a popover (for a Neighbours card); ``key`` makes its widget keys unique."""
    with st.popover("Verdict", width="stretch", key=f"{key}_popover"):
        label = st.radio("These two items are", verdicts.LABELS, index=None, format_func=_label_text,
                         key=f"{key}_label")
        wrong = st.checkbox("Right for the wrong reason", key=f"{key}_wrong")
        reviewer = st.text_input("Your name", value=st.session_state.get(REVIEWER, ""), key=f"{key}_reviewer")
        if st.button("Record", key=f"{key}_record"):
            recorded = _record(pair, label, wrong, [], "", reviewer, model, None, None, score)
            if recorded is not None:
                st.success(f"Verdict {recorded} recorded.")
