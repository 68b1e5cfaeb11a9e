"""The knowledge context: datasets, documents, segments, metadata, tags."""
