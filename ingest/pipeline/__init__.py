"""The passes that join the stages: intake of files and emails, window matching, the watch pass, the GET path and the run summary."""
