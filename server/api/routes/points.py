"""Points: rule versions, re-scoring, adjustments and reversals."""

from typing import Annotated

from fastapi import APIRouter, Path, status

from server.api.deps import RuntimeDep, SessionDep, UowDep
from server.api.errors import WRITE
from server.api.schemas import (
    BIG_ID_MAX,
    AdjustmentIn,
    AppendedOut,
    ChangeOut,
    ReasonIn,
    RescoreIn,
    RescoreOut,
    RuleVersionIn,
    RuleVersionOut,
)
from server.services import ledger, rules, settlement

router = APIRouter(tags=["points"])


@router.get("/points/rules", response_model=list[RuleVersionOut])
def list_rule_versions(db: SessionDep) -> list[RuleVersionOut]:
    """Stored rule versions by effective date (the base fixed-points rule precedes them all)."""
    return [RuleVersionOut.model_validate(v) for v in rules.stored_versions(db.connection())]


@router.post(
    "/points/rules",
    response_model=RuleVersionOut,
    status_code=status.HTTP_201_CREATED,
    responses=WRITE,
)
def add_rule_version(body: RuleVersionIn, uow: UowDep) -> RuleVersionOut:
    """Add a rule version; it applies to sessions from its date once they close or are re-scored."""
    payload = body.model_dump(exclude={"version", "effective_from"})
    rule_set = rules.rule_set_from_json(body.version, body.effective_from, payload)
    rules.store_rule_version(uow, rule_set)
    return RuleVersionOut(
        version=body.version,
        effective_from=body.effective_from,
        body=rules.rule_set_to_json(rule_set),
    )


@router.post("/points/rescore", response_model=RescoreOut, responses=WRITE)
def rescore(body: RescoreIn, uow: UowDep, runtime: RuntimeDep) -> RescoreOut:
    """Preview (or apply, as reversals and new credits) a re-score of a period's closed sessions."""
    changes = settlement.rescore(
        uow,
        body.start,
        body.end,
        apply_changes=body.apply,
        now=runtime.clock.now(),
        zone=runtime.settings.zone,
    )
    return RescoreOut(
        applied=body.apply,
        changes=[ChangeOut(**c.__dict__, delta=c.delta) for c in changes],
    )


@router.post(
    "/members/{employee_no}/adjustments",
    response_model=AppendedOut,
    status_code=status.HTTP_201_CREATED,
    responses=WRITE,
)
def adjust_points(
    employee_no: Annotated[str, Path(min_length=1, max_length=32)],
    body: AdjustmentIn,
    uow: UowDep,
    runtime: RuntimeDep,
) -> AppendedOut:
    """Add a manual adjustment with its reason."""
    done = ledger.adjust(
        uow,
        employee_no,
        body.amount,
        body.reason,
        now=runtime.clock.now(),
        zone=runtime.settings.zone,
    )
    return AppendedOut.model_validate(done)


@router.post(
    "/ledger/{entry_id}/reversal",
    response_model=AppendedOut,
    status_code=status.HTTP_201_CREATED,
    responses=WRITE,
)
def reverse_entry(
    entry_id: Annotated[int, Path(ge=1, le=BIG_ID_MAX)],
    body: ReasonIn,
    uow: UowDep,
    runtime: RuntimeDep,
) -> AppendedOut:
    """Reverse one ledger entry; history is kept, the balance moves back."""
    return AppendedOut.model_validate(
        ledger.reverse(uow, entry_id, body.reason, runtime.clock.now())
    )
