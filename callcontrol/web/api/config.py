"""What the HTTP API needs beyond the shared settings, and its pluggable collaborators.

``ApiSettings`` holds the knobs of the API alone (until the lead moves them into
``callcontrol.settings``). SIP realm and domain are not among them: they belong
to ``Settings.provisioning``, whose ``ProvisioningService`` is the one place SIP
accounts are created, re-keyed and deleted. The API reaches it through the
``SipAccountProvisioner`` protocol; ``NumberService`` (built at start-up on the
app's sessions) carries out the number life cycle. All live under typed ``AppKey``s.
"""

from __future__ import annotations

from typing import Protocol

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from callcontrol.db.models import SipAccount
from callcontrol.domain.destinations import DestinationPolicy
from callcontrol.services.numbers import NumberService


class ApiSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    max_json_bytes: int = Field(default=64 * 1024, gt=0)


class SipAccountProvisioner(Protocol):
    """Creates, re-keys and deletes SIP accounts and makes Asterisk learn of it.

    ``provisioning.service.ProvisioningService`` is the implementation. A refused
    request raises ``InvalidInput`` (``LoginTaken`` for a login in use,
    ``SipAccountNotFound`` for an unknown one) and changes nothing.
    """

    async def create_sip_account(
        self, account_id: int, login: str, domain: str | None = None
    ) -> tuple[SipAccount, str]: ...

    async def reset_password(self, login: str) -> tuple[SipAccount, str]: ...

    async def delete_sip_account(self, login: str) -> None: ...


API_SETTINGS = web.AppKey("api_settings", ApiSettings)
PROVISIONER = web.AppKey("sip_account_provisioner", SipAccountProvisioner)
NUMBER_SERVICE = web.AppKey("number_service", NumberService)
DESTINATION_POLICY = web.AppKey("destination_policy", DestinationPolicy)
