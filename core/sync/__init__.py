"""Sync: moving events between replicas (bundles now; the wire protocol next)."""
