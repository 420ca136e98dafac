"""money holes: expired initiations are still asked about (backoff, given up after 24 h);
failed webhooks are retried with backoff and a cap

Revision ID: i11_money_holes
Revises: i17_plan_options
Create Date: 2026-12-03 10:45:00

"""
from alembic import op
import sqlalchemy as sa

import portal.models


revision = 'i11_money_holes'
down_revision = 'i17_plan_options'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('stk_initiations', schema=None) as batch_op:
        batch_op.add_column(sa.Column('late_query_count', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('next_query_at', portal.models.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('query_given_up_at', portal.models.UTCDateTime(timezone=True), nullable=True))
        batch_op.create_index('ix_initiations_status_next_query', ['status', 'next_query_at'], unique=False)
    with op.batch_alter_table('webhook_logs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('next_try_at', portal.models.UTCDateTime(timezone=True), nullable=True))


def downgrade():
    with op.batch_alter_table('webhook_logs', schema=None) as batch_op:
        batch_op.drop_column('next_try_at')
    with op.batch_alter_table('stk_initiations', schema=None) as batch_op:
        batch_op.drop_index('ix_initiations_status_next_query')
        batch_op.drop_column('query_given_up_at')
        batch_op.drop_column('next_query_at')
        batch_op.drop_column('late_query_count')
