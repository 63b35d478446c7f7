"""Reading reports: the schema, the CSV header reader, row validation, the streaming CSV reader, Message Data and report types 2-4."""
