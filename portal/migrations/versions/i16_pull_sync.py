"""pull sync: router transport, sync token and state; activations can be offered

Revision ID: i16_pull_sync
Revises: i14o_owner_pages
Create Date: 2026-11-30 10:00:00

"""
from alembic import op
import sqlalchemy as sa

import portal.models  # noqa: F401  (custom column types)


revision = 'i16_pull_sync'
down_revision = 'i14o_owner_pages'
branch_labels = None
depends_on = None

OLD_ACTIVATION_STATES = "status IN ('pending', 'running', 'done', 'failed')"
NEW_ACTIVATION_STATES = "status IN ('pending', 'running', 'offered', 'done', 'failed')"


def upgrade():
    with op.batch_alter_table('routers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('transport', sa.String(length=8), server_default='api', nullable=False))
        batch_op.add_column(sa.Column('sync_token_hash', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('sync_interval_s', sa.Integer(), server_default='15', nullable=False))
        batch_op.add_column(sa.Column('last_sync_at', portal.models.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('last_sync_version', sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column('sync_window_started_at', portal.models.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('sync_window_count', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('sync_usage_json', sa.Text(), nullable=True))
        batch_op.create_check_constraint('router_transport_valid', "transport IN ('api', 'pull')")
        batch_op.create_check_constraint('router_sync_interval_range', 'sync_interval_s BETWEEN 5 AND 60')

    with op.batch_alter_table('activations', schema=None) as batch_op:
        batch_op.drop_constraint('activation_status_valid', type_='check')
        batch_op.create_check_constraint('activation_status_valid', NEW_ACTIVATION_STATES)
        batch_op.drop_index('ix_activations_router_id')
        batch_op.create_index('ix_activations_router_status', ['router_id', 'status'], unique=False)


def downgrade():
    # Offered rows go back to pending: the API worker (or a later sync) delivers them again, and
    # every router operation is idempotent.
    op.execute("UPDATE activations SET status = 'pending' WHERE status = 'offered'")
    with op.batch_alter_table('activations', schema=None) as batch_op:
        batch_op.drop_index('ix_activations_router_status')
        batch_op.create_index('ix_activations_router_id', ['router_id'], unique=False)
        batch_op.drop_constraint('activation_status_valid', type_='check')
        batch_op.create_check_constraint('activation_status_valid', OLD_ACTIVATION_STATES)

    with op.batch_alter_table('routers', schema=None) as batch_op:
        batch_op.drop_constraint('router_sync_interval_range', type_='check')
        batch_op.drop_constraint('router_transport_valid', type_='check')
        batch_op.drop_column('sync_usage_json')
        batch_op.drop_column('sync_window_count')
        batch_op.drop_column('sync_window_started_at')
        batch_op.drop_column('last_sync_version')
        batch_op.drop_column('last_sync_at')
        batch_op.drop_column('sync_interval_s')
        batch_op.drop_column('sync_token_hash')
        batch_op.drop_column('transport')
