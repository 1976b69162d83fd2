"""Unit of work: one database transaction, rolled back unless committed."""

from types import TracebackType
from typing import Self

from sqlalchemy.orm import Session, sessionmaker


class UnitOfWork:
    """A transaction around a SQLAlchemy Session; use as a context manager, then commit()."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions
        self._session: Session | None = None

    @property
    def session(self) -> Session:
        """The open Session; only inside `with uow:`."""
        if self._session is None:
            raise RuntimeError("the unit of work is not open: use `with uow:`")
        return self._session

    def __enter__(self) -> Self:
        if self._session is not None:
            raise RuntimeError("the unit of work is already open")
        self._session = self._sessions()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        session, self._session = self._session, None
        if session is not None:
            # Whatever was not committed is abandoned, error or not.
            session.rollback()
            session.close()

    def commit(self) -> None:
        """Commit everything done in this unit of work."""
        self.session.commit()
