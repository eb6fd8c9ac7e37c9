"""The Textual TUI: plans, the plan editor, conflicts, history, sync status."""
