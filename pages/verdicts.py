"""Verdicts: what historians concluded about pairs, the groups of copies it implies, and how the models fare."""

import json

import pandas as pd
import plotly.express as px
import streamlit as st

from corpus_index import validation, verdicts
from corpus_index.annotations import verdict_annotations
from corpus_index.csv_export import csv_bytes
from corpus_index.models import model_label
from explorer import data, errors, links, resources, shell
from explorer.captions import item_caption
from explorer.progress import progress_bar

shell.enter()  # run outside app.py (a first deep link on a fresh server): hand over to it

corpus = resources.corpus()
root = str(corpus.root)
st.title("Verdicts")
st.caption("Verdicts are recorded on the Explain page under each explanation. A reviewer's new verdict on a pair "
           "replaces their earlier one; the history keeps both.")

listing, grouped, checked = st.tabs(["Verdicts", "Groups of copies", "Model validation"])

with listing, errors.shown("Reading the verdicts"):
    history = st.toggle("Include replaced verdicts (the history)", key="vd_history")
    table = verdicts.export_table(corpus.store, include_history=history)
    filters = st.columns(3)
    labels = filters[0].multiselect("Verdict", verdicts.LABELS, key="vd_labels")
    reviewers = filters[1].multiselect("Reviewer", sorted(set(table["reviewer"])), key="vd_reviewers")
    models = filters[2].multiselect("Model", sorted(set(table["model_key"].dropna())), key="vd_models",
                                    format_func=model_label)
    wrong_only = st.checkbox("Only verdicts flagged 'wrong reason'", key="vd_wrong")
    shown = table
    if labels:
        shown = shown[shown["label"].isin(labels)]
    if reviewers:
        shown = shown[shown["reviewer"].isin(reviewers)]
    if models:
        shown = shown[shown["model_key"].isin(models)]
    if wrong_only:
        shown = shown[shown["wrong_reason"]]
    st.markdown(f"**{len(shown)}** of {len(table)} verdicts")
    columns = ["id", "item1", "item2", "label", "wrong_reason", "regions", "reviewer", "note", "created_at",
               "title1", "year1", "page1", "title2", "year2", "page2", "model_key", "gamma", "pool", "score",
               "superseded_by", "stale"]
    picked = st.dataframe(shown[columns], hide_index=True, key="vd_table", on_select="rerun",
                          selection_mode="single-row")
    rows = picked.selection.rows if picked else []
    if rows:
        chosen = shown.iloc[rows[0]]
        pair = (int(chosen["item1"]), int(chosen["item2"]))
        links.link(f"Explain items {pair[0]} and {pair[1]} again", "explain", pair=pair,
                   model=chosen["model_key"] if isinstance(chosen["model_key"], str) else None)
    downloads = st.columns(3)
    downloads[0].download_button("Verdicts (CSV)", csv_bytes(shown), "verdicts.csv", "text/csv", on_click="ignore",
                                 key="vd_csv", help="Both items' book, title, year, page and source, and the model, "
                                 "γ, patch size and score each verdict was made under.")
    downloads[1].download_button(
        "Verdicts (W3C Web Annotation, JSON-LD)",
        lambda: json.dumps(verdict_annotations(corpus.store, shown), indent=1, ensure_ascii=False).encode(),
        "verdicts.jsonld", "application/ld+json", on_click="ignore", key="vd_annotations",
        help="One 'linking' annotation per verdict; targets are IIIF canvases, web addresses or stable item URIs.")
    downloads[2].download_button("Groups of copies (CSV)", lambda: csv_bytes(verdicts.groups(corpus.store)),
                                 "groups.csv", "text/csv", on_click="ignore", key="vd_groups_csv")

with grouped, errors.shown("Grouping the copies"):
    groups = verdicts.groups(corpus.store)
    st.caption("Items linked by `same` verdicts, directly or through others, form a group of copies. A pair on "
               "which a reviewer's current verdict is `different` links nothing.")
    if groups.empty:
        st.info("No groups yet: record `same` verdicts on the Explain page.")
    else:
        sizes = groups.groupby("group")["size"].first()
        number = st.selectbox("Group", list(sizes.index), key="vd_group",
                              format_func=lambda g: f"Group {g}: {sizes[g]} items")
        members = groups[groups["group"] == number]
        grid = st.columns(4)
        for position, member in enumerate(members.itertuples(index=False)):
            with grid[position % 4]:
                st.image(data.thumbnail(root, int(member.id)), width="stretch")
                st.caption(item_caption(corpus.item(int(member.id)), short=True))
                links.link("Neighbours", "neighbours", item=int(member.id))
        st.download_button(f"Group {number} (CSV)", csv_bytes(members), f"group-{number}.csv", "text/csv",
                           on_click="ignore", key="vd_group_csv")

with checked:
    built = corpus.models()
    st.caption(f"recall@k: the share of `same` and `partial` pairs whose items are among each other's k nearest "
               f"neighbours; mean rank of those pairs (within the first {validation.RANK_LIMIT}); false friends: "
               "`different` pairs ranked within k; Clever-Hans rate: the share of the verdicts made on a model's "
               "explanation that are flagged 'wrong reason'. Each pair counts with its latest verdict.")
    chosen_models = st.multiselect("Models", built, default=built[:3], key="vd_val_models", format_func=model_label)
    k = st.number_input("k", min_value=1, max_value=1000, value=10, step=1, key="vd_val_k")
    if st.button("Validate the models", key="vd_validate", type="primary", disabled=not chosen_models):
        with errors.shown("Validating the models"):
            bar = progress_bar("searching neighbours …")
            st.session_state["vd_validation"] = validation.validate(corpus, chosen_models, k=int(k),
                                                                    progress=bar)
            bar.empty()
    result = st.session_state.get("vd_validation")
    if result is not None:
        st.dataframe(result, hide_index=True)
        long = result.melt(id_vars="model", value_vars=["recall_at_k", "false_friends", "clever_hans_rate"],
                           var_name="measure", value_name="value")
        long["model"] = [model_label(key) for key in long["model"]]
        long["measure"] = long["measure"].map({"recall_at_k": f"recall@{int(result['k'].iloc[0])}",
                                               "false_friends": "false friends (pairs)",
                                               "clever_hans_rate": "Clever-Hans rate"})
        chart = px.bar(long.fillna(0), x="model", y="value", color="model", facet_col="measure", height=360)
        chart.update_yaxes(matches=None, showticklabels=True)
        chart.for_each_annotation(lambda note: note.update(text=note.text.split("=")[-1]))
        st.plotly_chart(chart, key="vd_val_chart")
        st.markdown("**Clever-Hans rate per model and γ** (γ changes the explanation, not the ranking)")
        st.dataframe(validation.clever_hans(corpus.store), hide_index=True)
        st.download_button("Validation table (CSV)", csv_bytes(pd.DataFrame(result)), "validation.csv", "text/csv",
                           on_click="ignore", key="vd_val_csv")
