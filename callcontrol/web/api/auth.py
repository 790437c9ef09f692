"""Who is calling: API tokens and the two roles.

Rules kept here:
- A request carries ``Authorization: Bearer <token>``; the database keeps only the
  token's SHA-256 (hex). No header, a malformed one, an unknown, revoked or
  expired token: 401, the same answer for each, so a probe learns nothing. A
  token is checked on every request, so a revoked one is refused at once.
- ``operator`` may do everything; ``customer`` only touches its own account. An
  object of another account is answered 404 exactly as a missing one would be,
  never 403: a customer must not learn that it exists.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from callcontrol.db.models import TokenRole
from callcontrol.db.types import utcnow
from callcontrol.repositories.api_tokens import token_hash, usable_token
from callcontrol.web.api.errors import Forbidden, NotFound, Unauthorized

__all__ = ["Caller", "authenticate", "bearer_token", "token_hash"]

_MAX_TOKEN_CHARS = 256


@dataclass(frozen=True, slots=True)
class Caller:
    role: TokenRole
    account_id: int | None  # None for the operator
    token_id: int

    @property
    def is_operator(self) -> bool:
        return self.role == "operator"

    def may_see(self, account_id: int | None) -> bool:
        """True when an object owned by ``account_id`` is visible to this caller."""
        return self.is_operator or (account_id is not None and account_id == self.account_id)

    def scope(self, account_id: int) -> int:
        """``account_id`` if visible; a 404 otherwise (never tell a customer it exists)."""
        if not self.may_see(account_id):
            raise NotFound(f"account {account_id} not found")
        return account_id

    def require_operator(self) -> None:
        if not self.is_operator:
            raise Forbidden("only the operator may do this")


def bearer_token(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    # A header aiohttp decoded with surrogates (bytes that are not UTF-8), or any
    # character beyond ASCII, is no token of ours: 401 before anything hashes it.
    if (
        scheme.lower() != "bearer"
        or not token
        or len(token) > _MAX_TOKEN_CHARS
        or not token.isascii()
    ):
        raise Unauthorized("send 'Authorization: Bearer <token>' with a valid API token")
    return token


async def authenticate(request: web.Request, sessions: async_sessionmaker[AsyncSession]) -> Caller:
    token = bearer_token(request)
    async with sessions() as session:
        row = await usable_token(session, token, utcnow())
    if row is None:
        raise Unauthorized("send 'Authorization: Bearer <token>' with a valid API token")
    return Caller(role=row.role, account_id=row.account_id, token_id=row.id)
