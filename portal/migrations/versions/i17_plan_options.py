"""plan options: devices per voucher (shared-users) and lock to the buying device (mac-address)

Revision ID: i17_plan_options
Revises: i16_pull_sync
Create Date: 2026-12-02 19:00:00

"""
from alembic import op
import sqlalchemy as sa


revision = 'i17_plan_options'
down_revision = 'i16_pull_sync'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('plans', schema=None) as batch_op:
        batch_op.add_column(sa.Column('devices', sa.Integer(), server_default='1', nullable=False))
        batch_op.add_column(sa.Column('lock_to_device', sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.create_check_constraint('plan_devices_range', 'devices BETWEEN 1 AND 50')


def downgrade():
    with op.batch_alter_table('plans', schema=None) as batch_op:
        batch_op.drop_constraint('plan_devices_range', type_='check')
        batch_op.drop_column('lock_to_device')
        batch_op.drop_column('devices')
