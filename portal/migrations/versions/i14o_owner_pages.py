"""owner pages (issue 14, points 6-12): sign-up phone and code, admin lock, print details, batch notes

Revision ID: i14o_owner_pages
Revises: i14_brand
Create Date: 2026-12-02 14:20:00

"""
from alembic import op
import sqlalchemy as sa

import portal.models  # noqa: F401  (custom column types)


# revision identifiers, used by Alembic.
revision = 'i14o_owner_pages'
down_revision = 'i14_brand'
branch_labels = None
depends_on = None

USER_COLUMNS = (
    ('phone', sa.String(length=12)),
    ('phone_confirmed_at', portal.models.UTCDateTime(timezone=True)),
    ('confirm_code_hash', sa.String(length=255)),
    ('confirm_code_sent_at', portal.models.UTCDateTime(timezone=True)),
    ('locked_by_admin_at', portal.models.UTCDateTime(timezone=True)),
    ('business_name', sa.String(length=120)),
    ('support_phone', sa.String(length=20)),
)


def upgrade():
    op.create_table('voucher_batches',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('ref', sa.String(length=16), nullable=False),
    sa.Column('owner_id', sa.Integer(), nullable=False),
    sa.Column('note', sa.String(length=200), nullable=True),
    sa.Column('created_at', portal.models.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['owner_id'], ['users.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('ref')
    )
    with op.batch_alter_table('voucher_batches', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_voucher_batches_owner_id'), ['owner_id'], unique=False)
    with op.batch_alter_table('users', schema=None) as batch_op:
        for name, type_ in USER_COLUMNS:
            batch_op.add_column(sa.Column(name, type_, nullable=True))
        batch_op.add_column(sa.Column('confirm_code_attempts', sa.Integer(), nullable=False, server_default='0'))
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.alter_column('confirm_code_attempts', server_default=None)
    with op.batch_alter_table('routers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('wifi_name', sa.String(length=64), nullable=True))
    with op.batch_alter_table('vouchers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('first_used_at', portal.models.UTCDateTime(timezone=True), nullable=True))


def downgrade():
    with op.batch_alter_table('vouchers', schema=None) as batch_op:
        batch_op.drop_column('first_used_at')
    with op.batch_alter_table('routers', schema=None) as batch_op:
        batch_op.drop_column('wifi_name')
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('confirm_code_attempts')
        for name, _ in reversed(USER_COLUMNS):
            batch_op.drop_column(name)
    with op.batch_alter_table('voucher_batches', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_voucher_batches_owner_id'))
    op.drop_table('voucher_batches')
