"""``python -m ingest`` is the same as the ``ingest`` command."""

import gc

if __name__ == "__main__":
    gc.disable()  # while the libraries are imported; main() turns it back on after them

from ingest.cli import main  # noqa: E402

if __name__ == "__main__":
    main()
