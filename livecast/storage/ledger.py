"""The coin-ledger repository: gifts (a debit, a credit and a record) and admin grants.

Overdrafts and balance overflows are refused by conditional UPDATEs (``... WHERE coins
>= ?``), which hold under concurrent writers on any backend: the row is locked by the
UPDATE itself, and a second sender re-reads the committed balance.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from livecast.storage.database import Database, Row

log = logging.getLogger(__name__)

GRANT = "UPDATE users SET coins = coins + ? WHERE id = ? AND coins <= ?"
DEBIT = "UPDATE users SET coins = coins - ? WHERE id = ? AND coins >= ?"
CREDIT = "UPDATE users SET coins = coins + ? WHERE id = ?"
INSERT_GIFT = (
    "INSERT INTO gifts (room_id, sender_id, recipient_id, gift, quantity, value, created_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id"
)
BALANCE = "SELECT coins FROM users WHERE id = ?"
LEADERBOARD = (
    "SELECT u.username, SUM(g.value) AS value, SUM(g.quantity) AS gifts FROM gifts g"
    " JOIN users u ON u.id = g.sender_id WHERE g.room_id = ?"
    " GROUP BY g.sender_id, u.username ORDER BY value DESC, MIN(g.id) LIMIT ?"
)

STATEMENTS: tuple[str, ...] = (GRANT, DEBIT, CREDIT, INSERT_GIFT, BALANCE, LEADERBOARD)


@dataclass(frozen=True)
class GiftRecord:
    id: int
    sender_balance: int


class LedgerRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def grant(self, user_id: int, amount: int, max_balance: int) -> bool:
        """Add ``amount`` coins unless the balance would pass ``max_balance``; False if refused."""
        return await self.db.execute(GRANT, (amount, user_id, max_balance - amount)) > 0

    async def send_gift(self, room_id: int, sender_id: int, recipient_id: int, gift: str,
                        quantity: int, value: int, created_at: str) -> GiftRecord | None:
        """Debit, credit and record in one transaction; None (nothing changed) when the
        sender cannot pay. ``ForeignKeyViolation`` if the room or a user is gone."""
        async with self.db.transaction() as tx:
            if await tx.execute(DEBIT, (value, sender_id, value)) != 1:
                return None
            await tx.execute(CREDIT, (value, recipient_id))
            gift_id = await tx.insert(INSERT_GIFT, (room_id, sender_id, recipient_id, gift, quantity, value,
                                                    created_at))
            row = await tx.fetch_one(BALANCE, (sender_id,))
        return GiftRecord(gift_id, int(row["coins"]) if row else 0)

    async def leaderboard(self, room_id: int, limit: int) -> list[Row]:
        return await self.db.fetch_all(LEADERBOARD, (room_id, limit))
