"""Rankings and benchmarks: member rankings, the monthly star, branch benchmarks, publication.

Monthly star tie-breaks, in order (published with the result):
1. more points in the month;
2. higher expected-attendance rate in the month;
3. fewer late arrivals in the month;
4. lower employee number (stable and visible to everyone).

Branch benchmarks are fair to small branches: each rate and each points-per-
member figure is shrunk toward the figure of all branches together by adding
`prior_weight` imaginary observations at that overall figure (an empirical
Bayes estimate). A branch of three whose only session went perfectly does not
outrank a branch of three hundred that kept 95% all year; as a branch's record
grows, its own figures dominate.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from server.errors import DomainError

STAR_TIE_BREAKS = (
    "points (more first)",
    "expected-attendance rate (higher first)",
    "late arrivals (fewer first)",
    "employee number (lower first)",
)


@dataclass(frozen=True)
class Ranked:
    """One member's place: equal points share a rank (1, 1, 3 …)."""

    rank: int
    member_id: int
    points: int


def rank_members(points: Mapping[int, int]) -> list[Ranked]:
    """Members by points, most first; ties share a rank and are listed by member id."""
    ordered = sorted(points.items(), key=lambda kv: (-kv[1], kv[0]))
    ranked: list[Ranked] = []
    for index, (member_id, total) in enumerate(ordered):
        rank = ranked[-1].rank if ranked and ranked[-1].points == total else index + 1
        ranked.append(Ranked(rank, member_id, total))
    return ranked


@dataclass(frozen=True)
class MonthRecord:
    """A member's month in one branch: what the star is chosen on."""

    member_id: int
    employee_no: str
    points: int
    expected: int
    attended: int
    late: int

    @property
    def rate(self) -> float:
        """Share of expected sessions attended (1.0 when nothing was expected)."""
        return self.attended / self.expected if self.expected else 1.0


def monthly_star(records: Iterable[MonthRecord]) -> MonthRecord | None:
    """The branch's star of the month by STAR_TIE_BREAKS; None if nobody earned points."""
    candidates = [r for r in records if r.points > 0]
    if not candidates:
        return None
    return min(candidates, key=lambda r: (-r.points, -r.rate, r.late, r.employee_no))


@dataclass(frozen=True)
class BranchRecord:
    """A branch's raw figures for a period."""

    org_unit_id: int
    members: int
    expected: int
    attended: int
    points: int


@dataclass(frozen=True)
class Benchmark:
    """A branch's raw and fair (shrunk) figures, and its place on each."""

    org_unit_id: int
    members: int
    attendance_rate: float
    fair_attendance_rate: float
    points_per_member: float
    fair_points_per_member: float
    attendance_rank: int
    points_rank: int


def _ranks(values: Mapping[int, float]) -> dict[int, int]:
    ordered = sorted(values.items(), key=lambda kv: (-kv[1], kv[0]))
    ranks: dict[int, int] = {}
    previous: float | None = None
    for index, (key, value) in enumerate(ordered):
        ranks[key] = ranks[ordered[index - 1][0]] if previous == value else index + 1
        previous = value
    return ranks


def benchmark_branches(
    branches: Iterable[BranchRecord], *, prior_weight: float = 10.0
) -> list[Benchmark]:
    """Benchmarks of branches on expected-attendance rate and points per member."""
    if prior_weight < 0:
        raise DomainError(f"prior weight cannot be negative ({prior_weight})")
    rows = list(branches)
    total_expected = sum(b.expected for b in rows)
    total_members = sum(b.members for b in rows)
    overall_rate = sum(b.attended for b in rows) / total_expected if total_expected else 0.0
    overall_ppm = sum(b.points for b in rows) / total_members if total_members else 0.0
    fair_rate: dict[int, float] = {}
    fair_ppm: dict[int, float] = {}
    for b in rows:
        fair_rate[b.org_unit_id] = (
            (b.attended + prior_weight * overall_rate) / (b.expected + prior_weight)
            if b.expected + prior_weight
            else 0.0
        )
        fair_ppm[b.org_unit_id] = (
            (b.points + prior_weight * overall_ppm) / (b.members + prior_weight)
            if b.members + prior_weight
            else 0.0
        )
    rate_ranks = _ranks(fair_rate)
    ppm_ranks = _ranks(fair_ppm)
    return sorted(
        (
            Benchmark(
                org_unit_id=b.org_unit_id,
                members=b.members,
                attendance_rate=b.attended / b.expected if b.expected else 0.0,
                fair_attendance_rate=fair_rate[b.org_unit_id],
                points_per_member=b.points / b.members if b.members else 0.0,
                fair_points_per_member=fair_ppm[b.org_unit_id],
                attendance_rank=rate_ranks[b.org_unit_id],
                points_rank=ppm_ranks[b.org_unit_id],
            )
            for b in rows
        ),
        key=lambda x: (x.attendance_rank, x.points_rank, x.org_unit_id),
    )


@dataclass(frozen=True)
class Adjustment:
    """A published figure that has changed since: what was published, what holds now."""

    member_id: int
    published: int
    current: int

    @property
    def delta(self) -> int:
        """The correction made after publication."""
        return self.current - self.published


def adjustments_since(published: Mapping[int, int], current: Mapping[int, int]) -> list[Adjustment]:
    """Figures frozen at publication that later corrections have changed, by member id."""
    changed = []
    for member_id in sorted(published.keys() | current.keys()):
        before = published.get(member_id, 0)
        now = current.get(member_id, 0)
        if before != now:
            changed.append(Adjustment(member_id, before, now))
    return changed
