"""The client side: the `vidda` command line (and, next, the Textual TUI)."""
