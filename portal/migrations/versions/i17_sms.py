"""sms to customers and alerts to owners: the SMS outbox, raw delivery reports, owner alerts,
per-owner SMS settings (own Africa's Talking key encrypted), and the purchase language / opt-out on vouchers

Revision ID: i17_sms
Revises: i15_ledger
Create Date: 2026-12-03 14:00:44.580777

"""
from alembic import op
import sqlalchemy as sa

import portal.models  # noqa: F401  (custom column types)


# revision identifiers, used by Alembic.
revision = 'i17_sms'
down_revision = 'i15_ledger'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('sms_delivery_reports',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('payload', sa.Text(), nullable=False),
    sa.Column('remote_addr', sa.String(length=45), nullable=True),
    sa.Column('message_id', sa.String(length=64), nullable=True),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('received_at', portal.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('processed_at', portal.models.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('sms_delivery_reports', schema=None) as batch_op:
        batch_op.create_index('ix_sms_reports_received', ['received_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_sms_delivery_reports_message_id'), ['message_id'], unique=False)

    op.create_table('notify_settings',
    sa.Column('owner_id', sa.Integer(), nullable=False),
    sa.Column('customer_sms', sa.Boolean(), nullable=False),
    sa.Column('monthly_cap', sa.Integer(), nullable=True),
    sa.Column('alert_phone', sa.String(length=12), nullable=True),
    sa.Column('alert_router_down', sa.Boolean(), nullable=False),
    sa.Column('alert_paybill_failing', sa.Boolean(), nullable=False),
    sa.Column('alert_problem_waiting', sa.Boolean(), nullable=False),
    sa.Column('alert_payout_failed', sa.Boolean(), nullable=False),
    sa.Column('at_username', sa.String(length=64), nullable=True),
    sa.Column('at_api_key_encrypted', sa.Text(), nullable=True),
    sa.Column('at_sender', sa.String(length=16), nullable=True),
    sa.Column('updated_at', portal.models.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['owner_id'], ['users.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('owner_id')
    )
    op.create_table('owner_alerts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('owner_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('detail', sa.String(length=300), nullable=False),
    sa.Column('opened_at', portal.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('notified_at', portal.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('cleared_at', portal.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('all_clear_sent_at', portal.models.UTCDateTime(timezone=True), nullable=True),
    sa.CheckConstraint("kind IN ('router_down', 'paybill_failing', 'problem_waiting', 'payout_failed')", name='alert_kind_valid'),
    sa.ForeignKeyConstraint(['owner_id'], ['users.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('owner_alerts', schema=None) as batch_op:
        batch_op.create_index('ix_alerts_owner_kind_open', ['owner_id', 'kind', 'cleared_at'], unique=False)

    op.create_table('sms_messages',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('dedupe_key', sa.String(length=64), nullable=True),
    sa.Column('kind', sa.String(length=8), nullable=False),
    sa.Column('owner_id', sa.Integer(), nullable=False),
    sa.Column('voucher_id', sa.Integer(), nullable=True),
    sa.Column('alert_id', sa.Integer(), nullable=True),
    sa.Column('phone', sa.String(length=16), nullable=False),
    sa.Column('language', sa.String(length=2), nullable=False),
    sa.Column('text', sa.String(length=480), nullable=True),
    sa.Column('state', sa.String(length=12), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', portal.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('lease_until', portal.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_error', sa.String(length=300), nullable=True),
    sa.Column('account', sa.String(length=8), nullable=True),
    sa.Column('provider_message_id', sa.String(length=64), nullable=True),
    sa.Column('provider_status_code', sa.Integer(), nullable=True),
    sa.Column('delivery_status', sa.String(length=24), nullable=True),
    sa.Column('delivery_reason', sa.String(length=64), nullable=True),
    sa.Column('cost', sa.String(length=24), nullable=True),
    sa.Column('cost_kes_micro', sa.BigInteger(), nullable=True),
    sa.Column('created_at', portal.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('sent_at', portal.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('delivered_at', portal.models.UTCDateTime(timezone=True), nullable=True),
    sa.CheckConstraint("kind IN ('receipt', 'resend', 'alert')", name='sms_kind_valid'),
    sa.CheckConstraint("state IN ('queued', 'sending', 'sent', 'delivered', 'undelivered', 'failed', 'skipped')", name='sms_state_valid'),
    sa.ForeignKeyConstraint(['alert_id'], ['owner_alerts.id'], ),
    sa.ForeignKeyConstraint(['owner_id'], ['users.id'], ),
    sa.ForeignKeyConstraint(['voucher_id'], ['vouchers.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('dedupe_key')
    )
    with op.batch_alter_table('sms_messages', schema=None) as batch_op:
        batch_op.create_index('ix_sms_due', ['state', 'next_attempt_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_sms_messages_provider_message_id'), ['provider_message_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_sms_messages_voucher_id'), ['voucher_id'], unique=False)
        batch_op.create_index('ix_sms_owner_created', ['owner_id', 'created_at', 'id'], unique=False)

    with op.batch_alter_table('vouchers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('language', sa.String(length=2), nullable=True))
        batch_op.add_column(sa.Column('sms_opt_out', sa.Boolean(), server_default=sa.false(), nullable=False))



def downgrade():
    with op.batch_alter_table('vouchers', schema=None) as batch_op:
        batch_op.drop_column('sms_opt_out')
        batch_op.drop_column('language')

    with op.batch_alter_table('sms_messages', schema=None) as batch_op:
        batch_op.drop_index('ix_sms_owner_created')
        batch_op.drop_index(batch_op.f('ix_sms_messages_voucher_id'))
        batch_op.drop_index(batch_op.f('ix_sms_messages_provider_message_id'))
        batch_op.drop_index('ix_sms_due')

    op.drop_table('sms_messages')
    with op.batch_alter_table('owner_alerts', schema=None) as batch_op:
        batch_op.drop_index('ix_alerts_owner_kind_open')

    op.drop_table('owner_alerts')
    op.drop_table('notify_settings')
    with op.batch_alter_table('sms_delivery_reports', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sms_delivery_reports_message_id'))
        batch_op.drop_index('ix_sms_reports_received')

    op.drop_table('sms_delivery_reports')
