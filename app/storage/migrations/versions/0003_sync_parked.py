"""sync engine state: remote writes parked until the rows they need exist

Revision ID: 0003
Revises: 0002
"""
import sqlalchemy as sa
from alembic import op


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('sync_parked',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('tbl', sa.String(length=32), nullable=False),
    sa.Column('row_id', sa.String(length=64), nullable=False),
    sa.Column('fields', sa.JSON(), nullable=False),
    sa.Column('base', sa.JSON(), nullable=True),
    sa.Column('device_id', sa.String(length=64), nullable=False),
    sa.Column('key', sa.String(length=600), nullable=False),
    sa.Column('at', sa.String(length=40), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('sync_parked', schema=None) as batch_op:
        batch_op.create_index('ix_sync_parked_row', ['tbl', 'row_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('sync_parked', schema=None) as batch_op:
        batch_op.drop_index('ix_sync_parked_row')
    op.drop_table('sync_parked')
