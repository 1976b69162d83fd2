"""The points ledger: append-only entries whose sum is the balance.

Nothing is ever edited. A correction appends a reversal of the old entry and,
if something is still owed, a new entry; re-scoring under a new rule version
is a diff between the standing credits and what the rules now say (shown as a
preview first), applied the same way. Operations return the entries to append,
so the database adapter can insert exactly those.
"""

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace

from server.domain.points import Credit, CreditKey, LedgerSource
from server.errors import LedgerError


@dataclass(frozen=True)
class NewEntry:
    """An entry to append: attendance credits name their session, reversals their target."""

    member_id: int
    amount: int
    source: LedgerSource
    rule_version: str
    session_id: int | None = None
    reverses_id: int | None = None
    reason: str | None = None


@dataclass(frozen=True)
class Entry(NewEntry):
    """An entry the ledger holds, with its id (order of appending)."""

    id: int = 0

    def as_new(self) -> NewEntry:
        """The same content as an entry still to append."""
        return NewEntry(
            self.member_id,
            self.amount,
            self.source,
            self.rule_version,
            self.session_id,
            self.reverses_id,
            self.reason,
        )


@dataclass(frozen=True)
class Change:
    """One attendance credit a re-score would change: before and after."""

    member_id: int
    session_id: int
    old_amount: int
    old_version: str | None
    new_amount: int
    new_version: str | None

    @property
    def delta(self) -> int:
        """How the member's balance would move."""
        return self.new_amount - self.old_amount


@dataclass(frozen=True)
class Ledger:
    """The entries in the order they were appended."""

    entries: tuple[Entry, ...] = ()

    def balance(self, member_id: int) -> int:
        """A member's balance: the sum of their entries."""
        return sum(e.amount for e in self.entries if e.member_id == member_id)

    def balances(self) -> dict[int, int]:
        """Every member's balance."""
        totals: dict[int, int] = {}
        for e in self.entries:
            totals[e.member_id] = totals.get(e.member_id, 0) + e.amount
        return totals

    def entry(self, entry_id: int) -> Entry:
        """The entry with this id; LedgerError if there is none."""
        for e in self.entries:
            if e.id == entry_id:
                return e
        raise LedgerError(f"no ledger entry {entry_id}")

    def reversed_ids(self) -> frozenset[int]:
        """Ids of entries that a reversal has cancelled."""
        return frozenset(e.reverses_id for e in self.entries if e.reverses_id is not None)

    def standing_credits(self) -> dict[CreditKey, Entry]:
        """The attendance credits not reversed, by (member, session)."""
        cancelled = self.reversed_ids()
        return {
            (e.member_id, e.session_id): e
            for e in self.entries
            if e.source is LedgerSource.ATTENDANCE
            and e.session_id is not None
            and e.id not in cancelled
        }

    def append(self, new: Iterable[NewEntry]) -> "Ledger":
        """This ledger with `new` appended, ids continuing from the last one."""
        next_id = max((e.id for e in self.entries), default=0) + 1
        added = []
        for offset, n in enumerate(new):
            added.append(Entry(**{**n.__dict__, "id": next_id + offset}))
        return Ledger((*self.entries, *added))


def reversal_of(ledger: Ledger, entry_id: int, reason: str) -> NewEntry:
    """The entry that cancels `entry_id`; LedgerError if it is a reversal or already reversed."""
    target = ledger.entry(entry_id)
    if target.source is LedgerSource.REVERSAL:
        raise LedgerError(f"entry {entry_id} is a reversal; correct it with a new entry")
    if entry_id in ledger.reversed_ids():
        raise LedgerError(f"entry {entry_id} has already been reversed")
    if not reason.strip():
        raise LedgerError("a reversal needs a reason")
    return NewEntry(
        member_id=target.member_id,
        amount=-target.amount,
        source=LedgerSource.REVERSAL,
        rule_version=target.rule_version,
        session_id=target.session_id,
        reverses_id=target.id,
        reason=reason.strip(),
    )


def adjustment(member_id: int, amount: int, reason: str, rule_version: str) -> NewEntry:
    """A manual adjustment; it must move the balance and say why."""
    if amount == 0:
        raise LedgerError("an adjustment of 0 points changes nothing")
    if not reason.strip():
        raise LedgerError("an adjustment needs a reason")
    return NewEntry(member_id, amount, LedgerSource.ADJUSTMENT, rule_version, reason=reason.strip())


def diff(
    ledger: Ledger,
    target: Mapping[CreditKey, Credit],
    in_scope: Callable[[CreditKey], bool] = lambda _: True,
) -> list[Change]:
    """What would change if the standing credits in scope became `target` (a preview)."""
    standing = {k: e for k, e in ledger.standing_credits().items() if in_scope(k)}
    wanted = {k: c for k, c in target.items() if in_scope(k)}
    changes = []
    for key in sorted(standing.keys() | wanted.keys()):
        old = standing.get(key)
        new = wanted.get(key)
        old_pair = (old.amount, old.rule_version) if old else (0, None)
        new_pair = (new.amount, new.rule_version) if new else (0, None)
        if old_pair != new_pair:
            changes.append(Change(key[0], key[1], *old_pair, *new_pair))
    return changes


def reconcile(
    ledger: Ledger,
    target: Mapping[CreditKey, Credit],
    reason: str,
    in_scope: Callable[[CreditKey], bool] = lambda _: True,
) -> list[NewEntry]:
    """The entries that make the standing credits in scope equal `target`.

    Each changed credit gets a reversal of the old entry (if any) and a new
    credit (if anything is owed): history stays, only the standing figure moves.
    """
    standing = ledger.standing_credits()
    new: list[NewEntry] = []
    for change in diff(ledger, target, in_scope):
        key = (change.member_id, change.session_id)
        old = standing.get(key)
        if old is not None:
            new.append(reversal_of(ledger, old.id, reason))
        credit = target.get(key)
        if credit is not None:
            new.append(
                NewEntry(
                    member_id=credit.member_id,
                    amount=credit.amount,
                    source=LedgerSource.ATTENDANCE,
                    rule_version=credit.rule_version,
                    session_id=credit.session_id,
                )
            )
    return new


def corrected(ledger: Ledger, entry_id: int, amount: int, reason: str) -> list[NewEntry]:
    """Correct an entry to `amount`: a reversal, then (unless 0) a replacement entry."""
    reversal = reversal_of(ledger, entry_id, reason)
    if amount == 0:
        return [reversal]
    original = ledger.entry(entry_id)
    return [reversal, replace(original.as_new(), amount=amount, reason=reason.strip())]
