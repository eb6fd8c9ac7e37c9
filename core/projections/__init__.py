"""Pure folds over events: plan state, conflicts, history, time travel."""
