"""Operating the archive: the job as a library (ingest.ops.job: what `ingest run` does
around the pipeline, callable from Python), archive upkeep and compliance jobs, verify,
doctor, status, metrics and the demo."""
