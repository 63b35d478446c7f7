"""The archive: key layout, storage (local and S3), staging by date, the commit protocol, raw copies, manifests, datasets and compaction."""
