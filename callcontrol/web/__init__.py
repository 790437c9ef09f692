"""The HTTP side of callcontrol: health, metrics and the operator/customer API."""
