"""Commands: what a person wants done, turned into event bodies (pure).

The shells (command line, TUI) call these with the current `PlanState` and
append the returned bodies with `EventLog.append`. Every edit here names
the heads it replaces, so merging stays per field and nothing is lost.
"""
