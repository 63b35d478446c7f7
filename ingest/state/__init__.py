"""Where the archiver remembers: the SQLite state store, its migrations, the run lock, and the window states and transitions."""
