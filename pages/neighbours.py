"""Neighbours: the nearest pages of a query (a corpus page or an uploaded scan) under a chosen model."""

import hashlib

import streamlit as st

from corpus_index import score_context
from corpus_index.csv_export import csv_bytes
from corpus_index.models import UNTRAINED_MARK, is_untrained, model_label
from explorer import controls, data, errors, links, prefetch, resources, shell, verdict_form
from explorer.captions import item_caption

shell.enter()  # run outside app.py (a first deep link on a fresh server): hand over to it

corpus = resources.corpus()
root = str(corpus.root)
version = resources.data_version(corpus)
link = links.read_and_warn()
st.title("Neighbours")

with st.sidebar:
    st.subheader("Similarity model")
    query_kind = controls.item_kind(link["item"])  # the model offered first follows it (tables: bigram network)
    model = controls.model_picker("nb", link["model"], kind=query_kind)
    k = st.slider("Neighbours (k)", 1, 48, 12, key="nb_k", bind="query-params")
    exclude = st.checkbox("Exclude the query's own book", key="nb_exclude", bind="query-params")
    st.subheader("Filters")
    chosen = controls.filters("nb", version)

left, right = st.columns([1, 3])
with left:
    upload = st.file_uploader("…or query with a scan", type=["png", "jpg", "jpeg", "tif", "tiff"],
                              key="nb_upload", help="Any page image; it is not added to the corpus.")
    item = link["item"]
    if upload is None and link["unknown_item"] is not None:
        errors.report("Finding neighbours", data.no_such_item(link["unknown_item"]))
    elif upload is None and item is None:
        st.info("Pick a page on the Corpus page (or enter its id), or upload a scan.")
    entered = st.number_input("Query item id", min_value=0, value=item, step=1, key="nb_item_input")
    if upload is None and entered is not None and entered != item:
        links.write(item=int(entered))
        st.rerun()

query_image_bytes = upload.getvalue() if upload is not None else None
if model is None or (query_image_bytes is None and item is None):
    st.stop()
links.write(model=model, item=item)

with errors.shown("Finding neighbours"):
    with left:
        if query_image_bytes is not None:  # checked as Add scans checks a scan: the same reasons, in the same words
            st.image(data.jpeg_bytes(data.load_upload(query_image_bytes)), caption="Uploaded scan", width="stretch")
        else:
            meta = data.item(item)
            st.image(data.preview(root, item), width="stretch")
            st.caption(item_caption(meta))
            links.link("Explain the query with itself", "explain", pair=(item, item), model=model)
    with right:
        controls.model_status(model)
        if model not in corpus.models():
            st.stop()
        filters = tuple(sorted(chosen.items()))
        with st.spinner("Searching …"):
            if query_image_bytes is not None:
                results = data.search_image(root, version, model, query_image_bytes, k, filters)
            else:
                results = data.search(root, version, model, item, k, exclude, filters)
        neighbour_ids = [int(i) for i in results["id"]]
        query_id = item if query_image_bytes is None else None  # an upload's factors are never cached
        # the explanations of these pairs are prepared in the background from now on (explorer/prefetch.py)
        prefetch.request(corpus, model, [query_id, *neighbour_ids] if query_id is not None else neighbour_ids)
        exact = results.attrs.get("exact", True)
        untrained = f" — ⚠ {UNTRAINED_MARK}" if is_untrained(model) else ""
        st.caption(f"{len(results)} nearest by similarity score y = ⟨φ(x), φ(x')⟩ under {model_label(model)}"
                   + ("" if exact else " — approximate index: some neighbours may be missed") + f"{untrained}. "
                   "The percentage under each score compares it with every pair of pages of the query's kind "
                   "in this corpus.")
        if untrained:
            st.warning(f"{model_label(model)}: {UNTRAINED_MARK}. Its scores show what the architecture alone "
                       "does; choose the bigram network (tables) or ImageNet VGG-16 for research.")
        if results.empty:
            st.info("No item matches these filters.")
        results = results.assign(percentile=score_context.percentiles(corpus, model, results["score"], query_kind))
        if query_image_bytes is None and (related := data.related_text(root, version, model, item, query_kind)):
            st.caption(related)
        gap, start = score_context.clear_gap(results["score"].tolist()), 0
        for position, row in enumerate(results.itertuples(index=False)):
            if position == gap:  # the clear gap breaks the grid: what is above it belongs together
                st.markdown(f"**Clear gap** — the scores drop from {results['score'].iloc[gap - 1]:.4g} to "
                            f"{row.score:.4g}: " + ("the best one stands" if gap == 1 else f"the {gap} above stand")
                            + " apart from the rest.")
                st.divider()
                start = gap
            if (position - start) % 4 == 0:
                grid = st.columns(4)
            with grid[(position - start) % 4]:
                st.image(data.thumbnail(root, int(row.id)), width="stretch")
                share = score_context.percentile_text(row.percentile, query_kind)
                st.markdown(f"**{row.rank}.** score **{row.score:.4g}**{' ⚠ untrained' if untrained else ''}"
                            + (f"  \n{share}" if share else "") + f"  \n{item_caption(row)}")
                if query_image_bytes is None:
                    links.link("Explain", "explain", pair=(item, int(row.id)), model=model)
                    verdict_form.verdict_popover((item, int(row.id)), model, row.score, key=f"nb_verdict_{row.id}")
                elif st.button("Explain", key=f"nb_explain_{row.id}"):
                    st.session_state["upload_query"] = query_image_bytes
                    links.go("explain", pair=(0, int(row.id)), model=model, query="upload")
                prefetch.show_readiness(corpus, model, query_id, int(row.id), neighbour_ids)
        digest = hashlib.sha1(query_image_bytes).hexdigest()[:8] if query_image_bytes else item
        columns = [c for c in ("rank", "id", "score", "percentile", "kind", "group", "book", "title", "author",
                               "year", "place", "printer", "page", "label", "source") if c in results.columns]
        st.download_button("Download the neighbours (CSV)",
                           csv_bytes(score_context.with_untrained_mark(results[columns], model)),
                           file_name=f"neighbours-{digest}-{model}.csv", mime="text/csv", on_click="ignore",
                           key="nb_csv")
        if st.toggle("Show the results as a table", key="nb_table"):
            st.dataframe(results[columns], hide_index=True)
