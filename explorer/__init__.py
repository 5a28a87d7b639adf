"""App-side glue of the Streamlit explorer: settings, shared resources, deep links, cached reads, shared widgets.

Layout lives in ``app.py`` and ``pages/``; methods live in :mod:`bilrp_core` (explanations,
rendering, invariance) and :mod:`corpus_index` (data, search, factor cache).
"""
