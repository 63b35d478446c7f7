"""certainly-ingest: archive Certainly chatbot message reports, hands-off.

The package reads like the pipeline, a package per stage, data flowing one way (the
import contracts in pyproject.toml keep it so; CONTRIBUTING.md's package map names each
module)::

    cli -> ops -> export -> pipeline -> request | mail | archive -> state | parse
        -> settings | logs -> unknown_settings -> errors | inert | crashpoints | report_types

``request`` plans export windows and submits them, and paces the synchronous GETs;
``mail`` reads the mailbox (folders in the server's namespace, large messages part by
part, whose mail is ours and whether it was sent to this account); ``parse`` reads and
validates the report CSVs; ``archive`` keeps the Delta tables, raw copies, manifests, the
audit log and legal holds, and forgets rows on erasure and retention; ``state`` is the
job's SQLite ledger and lock; ``pipeline`` ties them into a pass (intake, matching a report
to its window, the watch and GET paths, routing); ``export`` cuts signed bundles; ``ops``
holds the operator's commands (verify, doctor, status, metrics, erasure, resolving
conflicts, the evidence report, the demo); ``settings`` is the configuration, built once.
The user documentation is the site in ``docs/``.
"""

__version__ = "0.1.0"
