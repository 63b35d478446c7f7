"""The passes joining the stages: intake, window matching, the watch pass, the GET path, run counters.

To run the job from Python as `ingest run` does (job lock, staging sweep, resumed
erasures, retention, metrics), call ingest.ops.job.run_job rather than these passes.
"""
