"""owner ledger, B2C payouts and refunds (issue 15)

Revision ID: i15_ledger
Revises: i13_tunnel
Create Date: 2026-12-03 14:10:00

"""
from alembic import op
import sqlalchemy as sa

import portal.models


revision = 'i15_ledger'
down_revision = 'i13_tunnel'
branch_labels = None
depends_on = None

UTC = portal.models.UTCDateTime(timezone=True)


def _transfer_columns():
    return [
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('owner_id', sa.Integer(), sa.ForeignKey('users.id'), nullable=True),
        sa.Column('paybill_id', sa.Integer(), sa.ForeignKey('paybills.id'), nullable=True),
        sa.Column('amount', sa.Integer(), nullable=False),
        sa.Column('phone', sa.String(length=12), nullable=True),
        sa.Column('state', sa.String(length=10), nullable=False),
        sa.Column('originator_conversation_id', sa.String(length=40), nullable=True, unique=True),
        sa.Column('conversation_id', sa.String(length=64), nullable=True),
        sa.Column('attempt', sa.Integer(), server_default='0', nullable=False),
        sa.Column('outcome_unknown', sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column('status_query_conversation_id', sa.String(length=64), nullable=True),
        sa.Column('status_queries', sa.Integer(), server_default='0', nullable=False),
        sa.Column('next_status_query_at', UTC, nullable=True),
        sa.Column('result_code', sa.String(length=32), nullable=True),
        sa.Column('result_desc', sa.String(length=300), nullable=True),
        sa.Column('failure_reason', sa.String(length=300), nullable=True),
        sa.Column('is_retryable', sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column('receipt', sa.String(length=20), nullable=True),
        sa.Column('created_at', UTC, nullable=False),
        sa.Column('sent_at', UTC, nullable=True),
        sa.Column('completed_at', UTC, nullable=True),
    ]


def upgrade():
    op.create_table(
        'ledger_entries',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('owner_id', sa.Integer(), sa.ForeignKey('users.id'), nullable=False),
        sa.Column('account', sa.String(length=8), nullable=False),
        sa.Column('kind', sa.String(length=12), nullable=False),
        sa.Column('amount', sa.Integer(), nullable=False),
        sa.Column('source_type', sa.String(length=8), nullable=False),
        sa.Column('source_id', sa.Integer(), nullable=False),
        sa.Column('receipt', sa.String(length=20), nullable=True),
        sa.Column('commission_bp', sa.Integer(), nullable=True),
        sa.Column('reason', sa.String(length=300), nullable=True),
        sa.Column('created_at', UTC, nullable=False),
        sa.CheckConstraint("kind IN ('sale', 'commission', 'payout', 'refund', 'adjustment')", name='ledger_kind_valid'),
        sa.CheckConstraint("account IN ('balance', 'owed')", name='ledger_account_valid'),
        sa.CheckConstraint("source_type IN ('payment', 'payout', 'refund', 'audit')", name='ledger_source_valid'),
        sa.CheckConstraint("kind <> 'adjustment' OR reason IS NOT NULL", name='ledger_adjustment_has_reason'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('source_type', 'source_id', 'kind', name='uq_ledger_source_kind'),
    )
    op.create_index('uq_ledger_sale_receipt', 'ledger_entries', ['receipt'], unique=True,
                    sqlite_where=sa.text("kind = 'sale' AND receipt IS NOT NULL"),
                    postgresql_where=sa.text("kind = 'sale' AND receipt IS NOT NULL"))
    op.create_index('ix_ledger_owner_account', 'ledger_entries', ['owner_id', 'account'], postgresql_include=['amount'])
    op.create_index('ix_ledger_owner_created', 'ledger_entries', ['owner_id', 'created_at', 'id'])
    op.create_index('ix_ledger_owner_id', 'ledger_entries', ['owner_id', 'id'],
                    postgresql_include=['account', 'kind', 'amount'])
    op.create_table(
        'ledger_checkpoints',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('owner_id', sa.Integer(), sa.ForeignKey('users.id'), nullable=False),
        sa.Column('up_to_id', sa.Integer(), nullable=False),
        sa.Column('account', sa.String(length=8), nullable=False),
        sa.Column('kind', sa.String(length=12), nullable=False),
        sa.Column('total', sa.BigInteger(), nullable=False),
        sa.Column('created_at', UTC, nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('owner_id', 'up_to_id', 'account', 'kind', name='uq_ledger_checkpoint'),
    )
    op.create_index('ix_ledger_checkpoint_owner', 'ledger_checkpoints', ['owner_id', 'up_to_id'])
    op.create_table(
        'owner_money_settings',
        sa.Column('owner_id', sa.Integer(), sa.ForeignKey('users.id', ondelete='CASCADE'), nullable=False),
        sa.Column('commission_bp', sa.Integer(), nullable=True),
        sa.Column('payout_phone', sa.String(length=12), nullable=True),
        sa.Column('payout_phone_confirmed_at', UTC, nullable=True),
        sa.Column('payout_code_hash', sa.String(length=255), nullable=True),
        sa.Column('payout_code_attempts', sa.Integer(), server_default='0', nullable=False),
        sa.Column('updated_at', UTC, nullable=False),
        sa.CheckConstraint('commission_bp IS NULL OR commission_bp BETWEEN 0 AND 10000', name='commission_range'),
        sa.PrimaryKeyConstraint('owner_id'),
    )
    op.create_table(
        'paybill_b2c',
        sa.Column('paybill_id', sa.Integer(), sa.ForeignKey('paybills.id', ondelete='CASCADE'), nullable=False),
        sa.Column('initiator_name_encrypted', sa.Text(), nullable=False),
        sa.Column('initiator_password_encrypted', sa.Text(), nullable=False),
        sa.Column('certificate_path', sa.String(length=500), nullable=True),
        sa.Column('updated_at', UTC, nullable=False),
        sa.PrimaryKeyConstraint('paybill_id'),
    )
    op.create_table(
        'payouts',
        *_transfer_columns(),
        sa.Column('kind', sa.String(length=8), nullable=False),
        sa.Column('requested_by', sa.String(length=254), nullable=False),
        sa.Column('approved_by', sa.String(length=254), nullable=True),
        sa.Column('approved_at', UTC, nullable=True),
        sa.CheckConstraint("state IN ('requested', 'approved', 'sent', 'completed', 'failed')", name='payout_state_valid'),
        sa.CheckConstraint('amount > 0', name='payout_amount_positive'),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_payouts_owner_id', 'payouts', ['owner_id'])
    op.create_index('ix_payouts_conversation_id', 'payouts', ['conversation_id'])
    op.create_index('ix_payouts_status_query_conversation_id', 'payouts', ['status_query_conversation_id'])
    op.create_index('ix_payouts_state_created', 'payouts', ['state', 'created_at'])
    op.create_index('ix_payouts_owner_created', 'payouts', ['owner_id', 'created_at', 'id'])
    op.create_index('uq_payout_one_open_per_owner', 'payouts', ['owner_id'], unique=True,
                    sqlite_where=sa.text("kind = 'payout' AND state IN ('requested', 'approved', 'sent')"),
                    postgresql_where=sa.text("kind = 'payout' AND state IN ('requested', 'approved', 'sent')"))
    op.create_table(
        'refunds',
        *_transfer_columns(),
        sa.Column('payment_id', sa.Integer(), sa.ForeignKey('payments.id'), nullable=False),
        sa.Column('method', sa.String(length=8), nullable=False),
        sa.Column('reason', sa.String(length=300), nullable=False),
        sa.Column('note', sa.String(length=300), nullable=True),
        sa.Column('requested_by', sa.String(length=254), nullable=False),
        sa.CheckConstraint("state IN ('requested', 'approved', 'sent', 'completed', 'failed')", name='refund_state_valid'),
        sa.CheckConstraint("method IN ('b2c', 'by_hand')", name='refund_method_valid'),
        sa.CheckConstraint('amount > 0', name='refund_amount_positive'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('payment_id', name='uq_refund_payment'),
    )
    op.create_index('ix_refunds_owner_id', 'refunds', ['owner_id'])
    op.create_index('ix_refunds_conversation_id', 'refunds', ['conversation_id'])
    op.create_index('ix_refunds_status_query_conversation_id', 'refunds', ['status_query_conversation_id'])
    op.create_index('ix_refunds_state_created', 'refunds', ['state', 'created_at'])


def downgrade():
    op.drop_table('refunds')
    op.drop_table('payouts')
    op.drop_table('paybill_b2c')
    op.drop_table('owner_money_settings')
    op.drop_table('ledger_checkpoints')
    op.drop_table('ledger_entries')
