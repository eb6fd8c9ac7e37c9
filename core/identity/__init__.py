"""Device identity: one Ed25519 key per device, encrypted at rest."""
