"""callcontrol: call-control engine for DID providers running Asterisk (ARI / Stasis)."""
