"""certainly-ingest: archive Certainly chatbot message reports, hands-off.

The package reads like the pipeline, a package per stage, data flowing one way (the
import contracts in pyproject.toml keep it so; the README's package map names each module)::

    cli -> ops -> export -> pipeline -> request | mail | archive -> state | parse
        -> settings | logs -> errors | inert | crashpoints | report_types

``request`` submits export windows, ``mail`` reads the mailbox, ``parse`` validates the
reports, ``archive`` keeps the Delta tables and raw copies, ``state`` is the job's SQLite
ledger, ``pipeline`` ties them into a pass, ``ops`` and ``export`` are the operator's and
the auditor's commands.
"""

__version__ = "0.1.0"
