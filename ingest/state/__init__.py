"""Where the job remembers: the SQLite state store, its migrations, the run lock, the window states."""
