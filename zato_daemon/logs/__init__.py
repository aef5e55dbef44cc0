"""Where log records go: server.log, stdout in --fg mode (and the journal, later)."""
