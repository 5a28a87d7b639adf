"""Add scans: upload images (with a metadata CSV) or a IIIF manifest; the ingest report says what was skipped, and
links lead to the new items' neighbours. A CSV also updates the metadata of scans already in the corpus (matched by
content, path or file name: :mod:`corpus_index.ingest.update`), each change logged like an edit on the Corpus page."""

import re
import secrets
from datetime import UTC, datetime
from pathlib import Path

import streamlit as st

from corpus_index.ingest.images import write_bytes_atomic
from explorer import data, errors, links, resources, shell
from explorer.captions import item_caption
from explorer.progress import progress_bar

shell.enter()  # run outside app.py (a first deep link on a fresh server): hand over to it

corpus = resources.corpus()
st.title("Add scans")
st.caption("Add your own scans: upload the images (metadata is optional — it can be added later on the Corpus "
           "page or with a CSV here). Every file is checked by the ingest code (format, size, duplicates); nothing "
           "that fails a check goes in, and the report below says why. Uploaded files are kept under the corpus "
           f"root in `{corpus.root / 'uploads'}`.")
MAX_LINKS = 24  # links to new items shown after an ingest


def upload_folder() -> Path:
    """A new folder for one upload under ROOT/uploads (time stamp + random suffix: never overwrites)."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    folder = corpus.root / "uploads" / f"{stamp}-{secrets.token_hex(3)}"
    folder.mkdir(parents=True, exist_ok=False)
    return folder


def safe_name(name: str, taken: set) -> str:
    """The file's base name with only safe characters, made unique within the upload."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(name).name).lstrip(".") or "scan"
    candidate, number = stem, 1
    while candidate in taken:
        candidate = f"{Path(stem).stem}-{number}{Path(stem).suffix}"
        number += 1
    taken.add(candidate)
    return candidate


scans_tab, iiif_tab = st.tabs(["Scans and metadata CSV", "IIIF manifest"])
with scans_tab:
    files = st.file_uploader("Scans (PNG, JPEG, TIFF)", type=["png", "jpg", "jpeg", "tif", "tiff"],
                             accept_multiple_files=True, key="add_files")
    table = st.file_uploader("Metadata CSV (optional)", type=["csv"], key="add_csv",
                             help="Columns: path (the uploaded file's name), kind, group, book, title, author, "
                                  "printer, place, year, page; optional label, region (x,y,w,h), note.")
    update = st.checkbox("Update scans already in the corpus from the CSV", value=True, key="add_update",
                         help="Rows naming a scan the corpus holds (same file name, path or content) replace its "
                              "metadata with the row's non-empty cells; every change is logged. A CSV alone "
                              "(no scans) only updates.")
    if st.button("Add the scans to the corpus" if files else "Update the metadata from the CSV", key="add_scans_go",
                 disabled=not (files or (table is not None and update))):
        with errors.shown("Adding the scans"):
            for outcome in ("add_report", "add_update_report"):  # this run's reports only
                st.session_state.pop(outcome, None)
            folder, taken = upload_folder(), set()
            for upload in files:
                write_bytes_atomic(upload.getvalue(), folder / safe_name(upload.name, taken))
            csv_path = None
            if table is not None:
                csv_path = write_bytes_atomic(table.getvalue(), folder / "metadata.csv")
            if files:
                report = corpus.ingest_uploads(folder, csv_path, progress=progress_bar("checking and indexing …"))
                st.session_state["add_report"] = report
            if csv_path is not None and update:
                editor = st.session_state.get("editor_name") or None  # the name given on the Corpus page
                st.session_state["add_update_report"] = corpus.update_metadata(csv_path, editor)
                data.forget_metadata()

with iiif_tab:
    manifest_file = st.file_uploader("Manifest file (JSON)", type=["json", "jsonld"], key="add_manifest")
    manifest_url = st.text_input("…or manifest URL", placeholder="https://…/manifest.json", key="add_url")
    max_size = st.number_input("Longest side of fetched images (px)", 400, 6000, 1600, step=100, key="add_max")
    allow_private = st.checkbox("Allow local/private image servers", value=False, key="add_private",
                                help="Off: the manifest's URLs may not reach this machine or the local network.")
    if st.button("Ingest the manifest", key="add_iiif_go", disabled=not (manifest_file or manifest_url)):
        with errors.shown("Ingesting the manifest"):
            if manifest_file is not None:
                source = write_bytes_atomic(manifest_file.getvalue(), upload_folder() / "manifest.json")
            else:
                source = manifest_url.strip()
            report = corpus.ingest_iiif(source, max_size=int(max_size), allow_private=allow_private,
                                        progress=progress_bar("fetching canvases …"))
            st.session_state["add_report"] = report

def counts(*outcomes) -> None:
    """One metric per (label, list of items) of a report, side by side."""
    for column, (label, members) in zip(st.columns(len(outcomes)), outcomes, strict=True):
        column.metric(label, len(members))


report = st.session_state.get("add_report")
if report is not None:
    st.subheader("Ingest report")
    counts(("Added", report.added), ("Already in the corpus", report.duplicates), ("Skipped", report.skipped))
    outcome = report.to_dataframe()
    if "reason" in outcome:  # the reasons in plain words, as every other page shows them
        outcome["reason"] = outcome["reason"].map(lambda reason: errors.plain(reason) if isinstance(reason, str)
                                                  else reason)
    if report.skipped:
        st.warning("Some files did not go in; the reasons are listed below.")
    st.dataframe(outcome, hide_index=True)
    if report.added:
        st.markdown("**The new items** — find their neighbours:")
        for item_id in report.added[:MAX_LINKS]:
            links.link(f"Find neighbours of {item_caption(data.item(item_id))}", "neighbours", item=item_id)
        if len(report.added) > MAX_LINKS:
            st.caption(f"… and {len(report.added) - MAX_LINKS} more: see the Corpus page.")
    models = corpus.models()
    if report.added and models and st.button(f"Update the {len(models)} built index(es) with the new items",
                                             key="add_build"):
        with errors.shown("Updating the indexes"):
            for key in models:
                summary = corpus.build(key, progress=progress_bar(f"{key} …")).summary()
                st.success(summary.splitlines()[0])

updated = st.session_state.get("add_update_report")
if updated is not None:
    st.subheader("Metadata update from the CSV")
    counts(("Updated", updated.updated), ("Already up to date", updated.unchanged), ("Rows skipped", updated.skipped))
    st.dataframe(updated.to_dataframe(), hide_index=True)
    for _, item_id, _ in updated.updated[:MAX_LINKS]:
        links.link(f"Find neighbours of {item_caption(data.item(item_id))}", "neighbours", item=item_id)
