"""Corpus: counts, filters, a 2-D map of the corpus under a model, a paged thumbnail gallery, and the metadata
editor (issue 16: scans are described or corrected after ingest; every change is logged with its editor)."""

import math

import plotly.express as px
import streamlit as st

from corpus_index.metadata_edit import BOOK_LEVEL_FIELDS, EDITABLE_FIELDS, book_items, known_kinds
from corpus_index.models import model_label
from explorer import config, controls, data, errors, links, resources, shell
from explorer.captions import field, item_caption

shell.enter()  # run outside app.py (a first deep link on a fresh server): hand over to it

corpus = resources.corpus()
root = str(corpus.root)
version = resources.data_version(corpus)
st.title("Corpus")
st.caption("Every page and region of the corpus. Filter them in the sidebar, click a point of the map or a "
           "thumbnail's link to find its neighbours, and describe or correct a scan under *Edit metadata*.")

with errors.shown("Reading the corpus"):
    everything = data.items(root, version)
    books = data.filter_values(root, version)["books"]
    cols = st.columns(4)
    cols[0].metric("Pages and regions", len(everything))
    cols[1].metric("Books", len(books))
    kinds = everything["kind"].fillna("unknown").value_counts()
    cols[2].metric("Kinds", len(kinds), help=", ".join(f"{k}: {n}" for k, n in kinds.items()))
    cols[3].metric("Models indexed", len(corpus.models()))

    with st.sidebar:
        st.subheader("Filters")
        chosen = controls.filters("corpus", version)
    shown = data.items(root, version, tuple(sorted(chosen.items())))
    st.caption(f"{', '.join(f'{n} {k}' for k, n in kinds.items())}. {len(shown)} of {len(everything)} items "
               "match the filters.")

    st.subheader("Map of the corpus")
    models = corpus.models()
    if not models:
        st.info("No model has been indexed yet; build one on the Neighbours page.")
    else:
        default = config.default_model()
        model = st.selectbox("Model", models, index=models.index(default) if default in models else 0,
                             format_func=lambda k: f"{model_label(k)}  ({k})", key="corpus_model")
        points = data.feature_map(root, version, model)
        points = points[points["id"].isin(shown["id"])]
        colour = st.radio("Colour by", ["kind", "book", "group", "place", "year"], horizontal=True,
                          key="corpus_colour")
        if len(points):
            figure = px.scatter(points, x="pc1", y="pc2", color=points[colour].astype(str), custom_data=["id"],
                                hover_data={"id": True, "book": True, "title": True, "year": True, "place": True,
                                            "printer": True, "page": True, "kind": True, "pc1": False,
                                            "pc2": False},
                                labels={"pc1": "PCA 1", "pc2": "PCA 2", "color": colour}, height=480)
            figure.update_traces(marker={"size": 9, "opacity": 0.8})
            explained = data.feature_map(root, version, model).attrs.get("explained", math.nan)
            st.caption(f"PCA of φ(x) under {model_label(model)}; the two axes hold {explained:.0%} of the "
                       "variance. Click a point to open its neighbours.")
            event = st.plotly_chart(figure, on_select="rerun", selection_mode="points", key="corpus_map")
            picked = event.selection.points if event and event.selection else []
            if picked:
                item = picked[0].get("customdata", [None])[0]
                if item is not None:
                    links.go("neighbours", item=int(item), model=model)

    st.subheader("Gallery")
    pages = max(1, math.ceil(len(shown) / config.PAGE_SIZE))
    page = st.number_input(f"Page (of {pages})", 1, pages, 1, key="corpus_page") if pages > 1 else 1
    start = (int(page) - 1) * config.PAGE_SIZE
    rows = shown.iloc[start:start + config.PAGE_SIZE]
    for position, row in enumerate(rows.itertuples(index=False)):
        if position % 6 == 0:
            grid = st.columns(6)  # one row of columns per six thumbnails keeps the rows aligned
        with grid[position % 6]:
            st.image(data.thumbnail(root, int(row.id)), width="stretch")
            st.caption(item_caption(row, short=True))
            links.link("Neighbours", "neighbours", item=int(row.id))

    st.subheader("Edit metadata")
    if everything.empty:
        st.info("The corpus has no items yet: add scans first.")
        st.stop()
    ids = [int(i) for i in everything["id"]]
    captions = {int(row.id): item_caption(row) for row in everything.itertuples(index=False)}
    chosen_item = st.selectbox("Item", ids, format_func=captions.get, key="corpus_edit", bind="query-params",
                               index=None, placeholder="choose an item to describe or correct")
    if chosen_item is not None:
        item = data.item(chosen_item)
        sharing = book_items(corpus.store, item.get("book"))
        st.session_state.setdefault("corpus_editor", st.session_state.get("editor_name", ""))
        with st.form(f"corpus_edit_form_{chosen_item}"):
            st.caption("Title, author, printer, place and year describe the book: "
                       + (f"saving them **changes the book {item['book']}, {sharing} items**. Give the item a "
                          "book id of its own first to describe it alone." if item.get("book") else
                          "this item has no book yet; saving them creates one for it alone."))
            values = {}
            columns = st.columns(3)
            for number, name in enumerate(EDITABLE_FIELDS[:-2]):
                current = field(item, name)
                values[name] = columns[number % 3].text_input(
                    name.capitalize() + (" (book)" if name in BOOK_LEVEL_FIELDS else ""),
                    "" if current is None else str(current), key=f"corpus_edit_{name}_{chosen_item}")
            kinds = ["", *known_kinds(corpus.store)]
            values["kind"] = columns[1].selectbox("Kind", kinds, index=kinds.index(item.get("kind") or ""),
                                                  key=f"corpus_edit_kind_{chosen_item}",
                                                  help="The model offered first follows it: tables go to the "
                                                       "bigram network, illustrations to VGG-16.")
            values["note"] = st.text_area("Note", item.get("note") or "", key=f"corpus_edit_note_{chosen_item}")
            editor = st.text_input("Your name (stored with every change)", key="corpus_editor")
            if st.form_submit_button("Save changes"):
                st.session_state["editor_name"] = editor  # remembered for the next edit and for CSV updates
                with errors.shown("Saving the metadata"):
                    result = corpus.edit_item(chosen_item, values, editor)
                    data.forget_metadata()
                    st.session_state["corpus_edit_saved"] = result.summary()
                    st.rerun()  # the counts, map and gallery above were drawn with the old metadata
        if saved := st.session_state.pop("corpus_edit_saved", None):
            st.success(saved)
        log = corpus.edit_log(chosen_item)
        if len(log):
            st.caption("Changes of this item so far (oldest first):")
            st.dataframe(log.drop(columns=["item_id", "hash"]), hide_index=True)
