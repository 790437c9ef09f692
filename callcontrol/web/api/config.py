"""What the HTTP API needs beyond the shared settings, and its pluggable collaborators.

``ApiSettings`` holds the knobs of the API alone (until the lead moves them into
``callcontrol.settings``); ``SipAccountsChanged`` is the hook provisioning plugs
in to push SIP accounts to Asterisk; ``NumberService`` (built at start-up on the
app's sessions) carries out the number life cycle. All live under typed ``AppKey``s.
"""

from __future__ import annotations

from typing import Protocol

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from callcontrol.services.numbers import NumberService


class ApiSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    sip_domain: str = Field(default="sip.callcontrol.invalid", min_length=1)
    # The realm Asterisk challenges with; HA1 digests bind it (see provisioning.digest).
    sip_realm: str = Field(default="callcontrol", min_length=1)
    max_json_bytes: int = Field(default=64 * 1024, gt=0)
    retention_days: int = Field(default=180, ge=1)


class SipAccountsChanged(Protocol):
    """Told after SIP accounts of an account were created, reset or deleted (committed)."""

    async def __call__(self, account_id: int) -> None: ...


async def ignore_sip_changes(account_id: int) -> None:
    """The default hook: nothing to provision."""


API_SETTINGS = web.AppKey("api_settings", ApiSettings)
SIP_ACCOUNTS_CHANGED = web.AppKey("sip_accounts_changed", SipAccountsChanged)
NUMBER_SERVICE = web.AppKey("number_service", NumberService)
