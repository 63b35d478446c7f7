"""Where the job remembers: the SQLite state store (``store``), what it records (``windows``,
``emails``, ``reports``), its migrations and the run lock."""
