"""Reading reports: schema, CSV header reader, row checks, streaming CSV, Message Data and types 2-4."""
