"""Writes Asterisk pjsip objects (SIP accounts, trunks) from the callcontrol database."""
