"""The archive: key layout, storage (local, S3), staging by date, the commit protocol, manifests."""
