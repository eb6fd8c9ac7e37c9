"""Events: ids, hybrid logical clocks, limits, bodies, the signed envelope."""
