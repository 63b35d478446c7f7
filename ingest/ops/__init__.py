"""Operating the archive: verify, doctor, status, metrics and the demo."""
