"""The passes joining the stages: intake, window matching, the watch pass, the GET path, run counters."""
