"""brands: the owner's look on the customer pages (per owner or per router)

Revision ID: i14_brand
Revises: 3916c213404a
"""
from alembic import op
import sqlalchemy as sa

import portal.models  # noqa: F401  (custom column types)

revision = "i14_brand"
down_revision = "3916c213404a"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "brands",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=False),
        sa.Column("router_id", sa.Integer(), nullable=True),
        sa.Column("hotspot_name", sa.String(length=60), nullable=True),
        sa.Column("accent", sa.String(length=7), nullable=True),
        sa.Column("support_phone", sa.String(length=20), nullable=True),
        sa.Column("terms_url", sa.String(length=300), nullable=True),
        sa.Column("logo_bytes", sa.LargeBinary(), nullable=True),
        sa.Column("logo_type", sa.String(length=16), nullable=True),
        sa.Column("logo_hash", sa.String(length=16), nullable=True),
        sa.Column("updated_at", portal.models.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint("logo_bytes IS NULL OR length(logo_bytes) <= 4096", name="brand_logo_small"),
        sa.ForeignKeyConstraint(["owner_id"], ["users.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["router_id"], ["routers.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("router_id", name="brand_one_per_router"),
    )
    op.create_index("ix_brands_owner_id", "brands", ["owner_id"], unique=False)
    op.create_index(
        "brand_one_per_owner",
        "brands",
        ["owner_id"],
        unique=True,
        sqlite_where=sa.text("router_id IS NULL"),
        postgresql_where=sa.text("router_id IS NULL"),
    )


def downgrade():
    op.drop_index("brand_one_per_owner", table_name="brands")
    op.drop_index("ix_brands_owner_id", table_name="brands")
    op.drop_table("brands")
