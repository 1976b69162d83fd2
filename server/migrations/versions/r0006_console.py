"""Issue 5: the admin console: users, roles, web sessions, API tokens, search, enrolment.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-21

- console_users: who signs in, with an argon2 hash, a role and (org admins) a unit;
- web_sessions: server-side sessions keyed by the SHA-256 of the cookie's secret;
- login_failures: recent wrong passwords, to throttle guessing;
- api_tokens: bearer tokens for integrations, stored as SHA-256;
- member_pinyin: names in pinyin for search by initials;
- enroll_requests: a member picked for the next enroll-mode tap on a reader.

Only ADD COLUMN and CREATE TABLE/INDEX on existing tables, so SQLite keeps the
ledger's and the audit log's triggers.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ROLES = "role IN ('super_admin', 'org_admin', 'auditor')"
ORG_ADMIN_UNIT = "role <> 'org_admin' OR org_unit_id IS NOT NULL"


def _aware(name: str, *, nullable: bool = True) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    """Create the console's tables."""
    op.create_table(
        "console_users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("password_hash", sa.String(200), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("org_unit_id", sa.Integer(), nullable=True),
        _aware("disabled_at"),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        _aware("last_login_at"),
        sa.CheckConstraint(ROLES, name="ck_console_users_role"),
        sa.CheckConstraint(ORG_ADMIN_UNIT, name="ck_console_users_org_admin_unit"),
        sa.ForeignKeyConstraint(
            ["org_unit_id"], ["org_units.id"], name="fk_console_users_org_unit_id_org_units"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_console_users"),
        sa.UniqueConstraint("username", name="uq_console_users_username"),
    )
    op.create_table(
        "web_sessions",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("csrf_token", sa.String(64), nullable=False),
        _aware("created_at", nullable=False),
        _aware("last_seen_at", nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["console_users.id"], name="fk_web_sessions_user_id_console_users"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_web_sessions"),
    )
    op.create_index("ix_web_sessions_user_id", "web_sessions", ["user_id"])
    op.create_table(
        "login_failures",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("remote", sa.String(64), nullable=False),
        _aware("at", nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_login_failures"),
    )
    op.create_index("ix_login_failures_username_at", "login_failures", ["username", "at"])
    op.create_index("ix_login_failures_remote_at", "login_failures", ["remote", "at"])
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("org_unit_id", sa.Integer(), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        _aware("revoked_at"),
        sa.CheckConstraint(ROLES, name="ck_api_tokens_role"),
        sa.CheckConstraint(ORG_ADMIN_UNIT, name="ck_api_tokens_org_admin_unit"),
        sa.ForeignKeyConstraint(
            ["org_unit_id"], ["org_units.id"], name="fk_api_tokens_org_unit_id_org_units"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_api_tokens"),
        sa.UniqueConstraint("token_hash", name="uq_api_tokens_token_hash"),
    )
    op.create_table(
        "member_pinyin",
        sa.Column("member_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("initials", sa.String(100), nullable=False),
        sa.Column("full", sa.String(400), nullable=False),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name="fk_member_pinyin_member_id_members"
        ),
        sa.PrimaryKeyConstraint("member_id", name="pk_member_pinyin"),
    )
    op.create_index("ix_member_pinyin_initials", "member_pinyin", ["initials"])
    op.create_table(
        "enroll_requests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("reader_id", sa.String(64), nullable=False),
        sa.Column("member_id", sa.Integer(), nullable=False),
        sa.Column("requested_by", sa.String(100), nullable=False),
        _aware("created_at", nullable=False),
        _aware("expires_at", nullable=False),
        sa.Column("card_id", sa.Integer(), nullable=True),
        _aware("completed_at"),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name="fk_enroll_requests_member_id_members"
        ),
        sa.ForeignKeyConstraint(["card_id"], ["cards.id"], name="fk_enroll_requests_card_id_cards"),
        sa.PrimaryKeyConstraint("id", name="pk_enroll_requests"),
    )
    op.create_index(
        "ix_enroll_requests_reader_id_expires_at", "enroll_requests", ["reader_id", "expires_at"]
    )


def downgrade() -> None:
    """Drop the console's tables."""
    for table in (
        "enroll_requests",
        "member_pinyin",
        "api_tokens",
        "login_failures",
        "web_sessions",
        "console_users",
    ):
        op.drop_table(table)
