"""FastAGI: the second executor of the routing plans (Asterisk's own dialplan
carries them out; see dialplan/extensions_callcontrol_agi.conf)."""
