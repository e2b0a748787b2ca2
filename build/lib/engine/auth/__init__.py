"""Authentication of outgoing mail: DKIM signing (engine.auth.dkim, engine.auth.keygen)."""
