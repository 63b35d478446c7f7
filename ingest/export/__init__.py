"""Compliance exports: read the archive through one seam, cut signed bundles, check them.

* :mod:`ingest.export.source`: the one way exports and reports read the archive
  (:func:`~ingest.export.source.open_snapshot`), and the archive version a cut came from.
* :mod:`ingest.export.csvsafe`: CSV cells a spreadsheet would run as formulas, neutralised.
* :mod:`ingest.export.signing`: Ed25519 keys and signatures.
* :mod:`ingest.export.bundle`: ``ingest export``, the bundle (data, manifest, sums, signature).
* :mod:`ingest.export.check`: ``ingest verify-export``.
"""
