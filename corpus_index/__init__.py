"""Corpus engine: demo corpus, ingest, SQLite store, FAISS indexes and the command line."""
