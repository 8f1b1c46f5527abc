"""Persist trunks and dispatch rules in the calls database, so every worker sees the same ones."""

from __future__ import annotations

from typing import Literal, TypeVar

from pydantic import BaseModel
from sqlalchemy import delete, select

from parley.calls.db import rowcount
from parley.calls.store import Store
from parley.telephony.models import TelephonyRow
from parley.telephony.trunks import DispatchRule, TelephonyConfig, Trunk

Kind = Literal["trunk", "rule"]
M = TypeVar("M", bound=BaseModel)
_MODELS: dict[str, type[BaseModel]] = {"trunk": Trunk, "rule": DispatchRule}


class TelephonyStore:
    """Trunks and dispatch rules over the calls `Store`'s database."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def _all(self, kind: Kind) -> list[BaseModel]:
        async with self.store.transaction() as s:
            rows = (await s.execute(select(TelephonyRow).where(TelephonyRow.kind == kind)
                                    .order_by(TelephonyRow.name))).scalars().all()
            return [_MODELS[kind].model_validate(r.data) for r in rows]

    async def trunks(self) -> list[Trunk]:
        return [t for t in await self._all("trunk") if isinstance(t, Trunk)]

    async def rules(self) -> list[DispatchRule]:
        return [r for r in await self._all("rule") if isinstance(r, DispatchRule)]

    async def config(self) -> TelephonyConfig:
        return TelephonyConfig(trunks=await self.trunks(), dispatch_rules=await self.rules())

    async def get_trunk(self, name: str) -> Trunk | None:
        async with self.store.transaction() as s:
            row = await s.get(TelephonyRow, ("trunk", name))
            return Trunk.model_validate(row.data) if row else None

    async def put(self, item: Trunk | DispatchRule) -> bool:
        """Create or replace; True when something changed."""
        kind = "trunk" if isinstance(item, Trunk) else "rule"
        data = item.model_dump(mode="json")
        async with self.store.transaction() as s:
            row = await s.get(TelephonyRow, (kind, item.name))
            if row is None:
                s.add(TelephonyRow(kind=kind, name=item.name, data=data))
                return True
            if row.data == data:
                return False
            row.data = data
            return True

    async def delete(self, kind: Kind, name: str) -> bool:
        """Remove one; True when it existed."""
        async with self.store.transaction() as s:
            result = await s.execute(delete(TelephonyRow).where(TelephonyRow.kind == kind,
                                                                TelephonyRow.name == name))
            return bool(rowcount(result))

    async def ensure(self, config: TelephonyConfig) -> dict[str, list[str]]:
        """Idempotently apply `config`; returns the names created/updated/unchanged."""
        report: dict[str, list[str]] = {"changed": [], "unchanged": []}
        items: list[Trunk | DispatchRule] = [*config.trunks, *config.dispatch_rules]
        for item in items:
            changed = await self.put(item)
            report["changed" if changed else "unchanged"].append(item.name)
        return report
