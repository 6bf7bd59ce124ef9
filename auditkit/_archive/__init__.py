"""The Parquet archive: layout, manifest, storage, export, verify, identity, privacy."""
