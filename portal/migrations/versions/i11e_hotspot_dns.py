"""hotspot dns name: the router's own hotspot address, the only public name link-login-only may use

Revision ID: i11e_hotspot_dns
Revises: i11_money_holes
Create Date: 2026-12-03 11:40:00

"""
from alembic import op
import sqlalchemy as sa


revision = 'i11e_hotspot_dns'
down_revision = 'i11_money_holes'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('routers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('hotspot_dns_name', sa.String(length=255), nullable=True))


def downgrade():
    with op.batch_alter_table('routers', schema=None) as batch_op:
        batch_op.drop_column('hotspot_dns_name')
