"""The billing service's tables (defined with the others in ``callcontrol.db.models``)."""

from callcontrol.db.models import BillingRun, NumberBillingState

__all__ = ["BillingRun", "NumberBillingState"]
