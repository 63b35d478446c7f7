"""The mailbox side: IMAP reading, part-by-part fetch, MIME extraction and sender authentication."""
