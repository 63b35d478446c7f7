"""certainly-ingest: archive Certainly chatbot message reports, hands-off.

The package reads like the pipeline, one module per stage, data flowing one way::

    settings -> store -> certainly -> requester -> mailbox -> attachments
             -> schema -> parser -> writer -> pipeline -> cli
"""

__version__ = "0.1.0"
