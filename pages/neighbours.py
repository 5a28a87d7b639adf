"""Neighbours: the nearest pages of a query (a corpus page or an uploaded scan) under a chosen model."""

import hashlib

import streamlit as st

from corpus_index.csv_export import csv_bytes
from corpus_index.models import model_label
from explorer import controls, data, errors, links, resources, shell
from explorer.captions import item_caption

shell.enter()  # run outside app.py (a first deep link on a fresh server): hand over to it

corpus = resources.corpus()
root = str(corpus.root)
version = resources.data_version(corpus)
link = links.read_and_warn()
st.title("Neighbours")

with st.sidebar:
    st.subheader("Similarity model")
    model = controls.model_picker("nb", link["model"])
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
        exact = results.attrs.get("exact", True)
        st.caption(f"{len(results)} nearest by y = ⟨φ(x), φ(x')⟩ under {model_label(model)}"
                   + ("" if exact else " — approximate index: some neighbours may be missed") + ".")
        if results.empty:
            st.info("No item matches these filters.")
        for position, row in enumerate(results.itertuples(index=False)):
            if position % 4 == 0:
                grid = st.columns(4)
            with grid[position % 4]:
                st.image(data.thumbnail(root, int(row.id)), width="stretch")
                st.markdown(f"**{row.rank}.** score **{row.score:.4g}**  \n{item_caption(row)}")
                if query_image_bytes is None:
                    links.link("Explain", "explain", pair=(item, int(row.id)), model=model)
                elif st.button("Explain", key=f"nb_explain_{row.id}"):
                    st.session_state["upload_query"] = query_image_bytes
                    links.go("explain", pair=(0, int(row.id)), model=model, query="upload")
        digest = hashlib.sha1(query_image_bytes).hexdigest()[:8] if query_image_bytes else item
        columns = [c for c in ("rank", "id", "score", "kind", "group", "book", "title", "author", "year", "place",
                               "printer", "page", "label", "source") if c in results.columns]
        st.download_button("Download the neighbours (CSV)", csv_bytes(results[columns]),
                           file_name=f"neighbours-{digest}-{model}.csv", mime="text/csv", on_click="ignore",
                           key="nb_csv")
        if st.toggle("Show the results as a table", key="nb_table"):
            st.dataframe(results[columns], hide_index=True)
