"""API tokens: create (``callcontrol token create`` and the API), list without
secrets, revoke.

The plain token is returned once and never stored: only its SHA-256 is kept.
The operator lists and revokes any token; a customer lists and revokes its own
account's (another account's token is a 404, as if it did not exist). A token
may carry an expiry; revoked or expired, it is a 401 on the next request.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from callcontrol.db.models import TokenRole
from callcontrol.db.types import utcnow
from callcontrol.repositories import api_tokens as repo
from callcontrol.repositories.api_tokens import TOKEN_PREFIX, TokenError, add_token, new_token
from callcontrol.web.api.endpoint import ApiCall, Route
from callcontrol.web.api.errors import NotFound
from callcontrol.web.api.schemas import TokenList, TokenOut, TokenQuery

__all__ = [
    "ROUTES", "TOKEN_PREFIX", "TokenError", "add_token", "create_token", "new_token",
    "revoke_token",
]  # fmt: skip
TAG = "tokens"


async def create_token(
    sessions: async_sessionmaker[AsyncSession],
    *,
    role: TokenRole,
    account_id: int | None = None,
    expires_at: datetime | None = None,
    label: str = "",
) -> str:
    """Create a token and commit it; return the plain token (show it once)."""
    async with sessions() as session, session.begin():
        return await add_token(
            session, role=role, account_id=account_id, expires_at=expires_at, label=label
        )


async def revoke_token(sessions: async_sessionmaker[AsyncSession], token: str) -> bool:
    """Revoke a token by its plain value; False if it was unknown or already revoked."""
    async with sessions() as session, session.begin():
        return await repo.revoke_by_value(session, token)


def expiry(days: int | None) -> datetime | None:
    return utcnow() + timedelta(days=days) if days is not None else None


def token_out(info: repo.TokenInfo) -> TokenOut:
    return TokenOut(
        id=info.id, role=info.role, account_id=info.account_id, label=info.label,
        created_at=info.created_at, expires_at=info.expires_at, revoked_at=info.revoked_at,
    )  # fmt: skip


async def list_tokens(call: ApiCall) -> TokenList:
    q = call.query_as(TokenQuery)
    account_id = q.account_id if call.caller.is_operator else call.caller.account_id
    async with call.sessions() as session:
        rows = await repo.list_tokens(session, account_id=account_id)
    return TokenList(items=[token_out(r) for r in rows])


async def revoke(call: ApiCall) -> None:
    token_id = call.id("token_id")
    async with call.sessions() as session, session.begin():
        found = await repo.get_token(session, token_id)
        if found is None or not call.caller.may_see(found.account_id):
            raise NotFound(f"token {token_id} not found")
        await repo.revoke_by_id(session, token_id)


ROUTES = [
    Route("GET", "/api/v1/tokens", list_tokens,
          "API tokens without their secrets (a customer: its own)", TAG,
          query=TokenQuery, response=TokenList),
    Route("DELETE", "/api/v1/tokens/{token_id}", revoke,
          "Revoke a token: refused (401) from its next request on", TAG, status=204),
]  # fmt: skip
