"""WireGuard management tunnel: router connection mode, pool address, keys, handshakes; the hub row

Revision ID: i13_tunnel
Revises: i11e_hotspot_dns
Create Date: 2026-12-03 14:00:00

"""
from alembic import op
import sqlalchemy as sa

import portal.models  # noqa: F401  (custom column types)


revision = 'i13_tunnel'
down_revision = 'i11e_hotspot_dns'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('routers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('connection_mode', sa.String(length=8), server_default='direct', nullable=False))
        batch_op.add_column(sa.Column('tunnel_address', sa.String(length=45), nullable=True))
        batch_op.add_column(sa.Column('wg_private_key_encrypted', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('wg_public_key', sa.String(length=44), nullable=True))
        batch_op.add_column(sa.Column('wg_previous_public_key', sa.String(length=44), nullable=True))
        batch_op.add_column(sa.Column('wg_rotated_at', portal.models.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('wg_last_handshake_at', portal.models.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('wg_rx_bytes', sa.BigInteger(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('wg_tx_bytes', sa.BigInteger(), server_default='0', nullable=False))
        batch_op.create_unique_constraint('uq_routers_tunnel_address', ['tunnel_address'])
        batch_op.create_check_constraint('router_connection_mode_valid', "connection_mode IN ('direct', 'tunnel')")

    op.create_table(
        'tunnel_hub',
        sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
        sa.Column('private_key_encrypted', sa.Text(), nullable=False),
        sa.Column('public_key', sa.String(length=44), nullable=False),
        sa.Column('created_at', portal.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column('last_sync_at', portal.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column('last_sync_error', sa.String(length=500), nullable=True),
        sa.Column('last_sync_ms', sa.Integer(), nullable=True),
        sa.Column('interface_kind', sa.String(length=16), nullable=True),
        sa.Column('peer_count', sa.Integer(), server_default='0', nullable=False),
        sa.CheckConstraint('id = 1', name='tunnel_hub_single_row'),
        sa.PrimaryKeyConstraint('id'),
    )


def downgrade():
    op.drop_table('tunnel_hub')
    with op.batch_alter_table('routers', schema=None) as batch_op:
        batch_op.drop_constraint('router_connection_mode_valid', type_='check')
        batch_op.drop_constraint('uq_routers_tunnel_address', type_='unique')
        batch_op.drop_column('wg_tx_bytes')
        batch_op.drop_column('wg_rx_bytes')
        batch_op.drop_column('wg_last_handshake_at')
        batch_op.drop_column('wg_rotated_at')
        batch_op.drop_column('wg_previous_public_key')
        batch_op.drop_column('wg_public_key')
        batch_op.drop_column('wg_private_key_encrypted')
        batch_op.drop_column('tunnel_address')
        batch_op.drop_column('connection_mode')
