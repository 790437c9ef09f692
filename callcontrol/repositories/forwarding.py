"""A number's forwarding rule and destinations, read and replaced as one.

Targets arrive here already checked and normalised (``services/destinations``);
replacing writes the rule and both positions in the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from callcontrol.db.models import ForwardingDestination, ForwardingRule
from callcontrol.domain.vocabulary import DestinationType, ForwardingMode


@dataclass(frozen=True, slots=True)
class StoredDestination:
    position: int
    type: DestinationType
    target: str
    ring_timeout_s: int


async def forwarding_of(
    session: AsyncSession, number_id: int
) -> tuple[ForwardingMode, list[StoredDestination]]:
    rule = await session.get(ForwardingRule, number_id)
    rows = await session.scalars(
        sa.select(ForwardingDestination)
        .where(ForwardingDestination.number_id == number_id)
        .order_by(ForwardingDestination.position)
    )
    dests = [StoredDestination(d.position, d.type, d.target, d.ring_timeout_s) for d in rows]
    return (rule.mode if rule is not None else ForwardingMode.SIMULTANEOUS), dests


async def replace_forwarding(
    session: AsyncSession,
    number_id: int,
    mode: ForwardingMode,
    destinations: Sequence[tuple[DestinationType, str, int]],
) -> None:
    """Mode and destinations (type, normalised target, ring timeout), positions 1..2."""
    await session.execute(
        sa.delete(ForwardingDestination).where(ForwardingDestination.number_id == number_id)
    )
    rule = await session.get(ForwardingRule, number_id)
    if rule is None:
        session.add(ForwardingRule(number_id=number_id, mode=mode))
    else:
        rule.mode = mode
    for position, (kind, target, timeout_s) in enumerate(destinations, 1):
        session.add(ForwardingDestination(
            number_id=number_id, position=position, type=kind, target=target,
            ring_timeout_s=timeout_s,
        ))  # fmt: skip
    await session.flush()
