"""Which backups to keep: a pure function of the backups and the policy.

Rules, applied together (a backup is kept if any rule keeps it):

* the ``keep_last`` newest backups;
* for each of the ``keep_daily`` most recent UTC days *that have backups*, the newest verified
  backup of that day (the newest one if none of that day is verified);
* the same per ISO week for the ``keep_weekly`` most recent weeks that have backups;
* always the newest verified backup.

Days and weeks are counted among days that have backups (as restic does), not back from
today, so a pause in backups never makes the retention delete more.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class Policy:
    keep_last: int
    keep_daily: int = 0
    keep_weekly: int = 0

    def __post_init__(self) -> None:
        for name in ("keep_last", "keep_daily", "keep_weekly"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")


@dataclass(frozen=True)
class Snapshot:
    key: str
    created: datetime
    verified: bool


@dataclass(frozen=True)
class Plan:
    keep: tuple[Snapshot, ...]
    delete: tuple[Snapshot, ...]


def plan(snapshots: Iterable[Snapshot], policy: Policy) -> Plan:
    """Split ``snapshots`` into those to keep and those to delete, both newest first."""
    newest_first = sorted(snapshots, key=lambda s: (s.created, s.key), reverse=True)
    keep: set[str] = {s.key for s in newest_first[: policy.keep_last]}
    keep.update(_bucket_representatives(newest_first, _day, policy.keep_daily))
    keep.update(_bucket_representatives(newest_first, _iso_week, policy.keep_weekly))
    newest_verified = next((s for s in newest_first if s.verified), None)
    if newest_verified is not None:
        keep.add(newest_verified.key)
    return Plan(
        keep=tuple(s for s in newest_first if s.key in keep),
        delete=tuple(s for s in newest_first if s.key not in keep),
    )


def _day(snapshot: Snapshot) -> Hashable:
    return snapshot.created.date()


def _iso_week(snapshot: Snapshot) -> Hashable:
    year, week, _ = snapshot.created.isocalendar()
    return (year, week)


def _bucket_representatives(
    newest_first: Sequence[Snapshot], bucket_of: Callable[[Snapshot], Hashable], count: int
) -> set[str]:
    buckets: dict[Hashable, list[Snapshot]] = {}
    for snapshot in newest_first:
        buckets.setdefault(bucket_of(snapshot), []).append(snapshot)
    chosen: set[str] = set()
    for members in list(buckets.values())[:count]:
        representative = next((s for s in members if s.verified), members[0])
        chosen.add(representative.key)
    return chosen
