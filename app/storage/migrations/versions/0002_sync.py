"""sync engine state: remote, cursors, conflicts, agreed stamps, object log, remote media

Revision ID: 0002
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('sync_remote',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('endpoint', sa.Text(), nullable=False),
    sa.Column('bucket', sa.String(length=63), nullable=False),
    sa.Column('prefix', sa.String(length=512), nullable=False),
    sa.Column('region', sa.String(length=64), nullable=False),
    sa.Column('updated_at', sa.String(length=40), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('sync_cursors',
    sa.Column('device_id', sa.String(length=36), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('updated_at', sa.String(length=40), nullable=False),
    sa.PrimaryKeyConstraint('device_id')
    )
    op.create_table('sync_conflicts',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('tbl', sa.String(length=32), nullable=False),
    sa.Column('row_id', sa.String(length=64), nullable=False),
    sa.Column('field', sa.String(length=64), nullable=False),
    sa.Column('local_value', sa.JSON(), nullable=True),
    sa.Column('remote_value', sa.JSON(), nullable=True),
    sa.Column('local_stamp', sa.String(length=64), nullable=False),
    sa.Column('remote_stamp', sa.String(length=64), nullable=False),
    sa.Column('winner', sa.String(length=8), nullable=False),
    sa.Column('detected_at', sa.String(length=40), nullable=False),
    sa.Column('status', sa.String(length=12), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('sync_conflicts', schema=None) as batch_op:
        batch_op.create_index('ix_sync_conflicts_status', ['status', 'detected_at'], unique=False)

    op.create_table('sync_base',
    sa.Column('tbl', sa.String(length=32), nullable=False),
    sa.Column('row_id', sa.String(length=64), nullable=False),
    sa.Column('stamps', sa.JSON(), nullable=False),
    sa.Column('tomb', sa.String(length=64), nullable=True),
    sa.PrimaryKeyConstraint('tbl', 'row_id')
    )
    op.create_table('sync_objects',
    sa.Column('key', sa.String(length=600), nullable=False),
    sa.Column('device_id', sa.String(length=64), nullable=False),
    sa.Column('first_seq', sa.Integer(), nullable=False),
    sa.Column('last_seq', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=12), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('at', sa.String(length=40), nullable=False),
    sa.PrimaryKeyConstraint('key')
    )
    op.create_table('sync_media',
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.Column('at', sa.String(length=40), nullable=False),
    sa.PrimaryKeyConstraint('sha256')
    )


def downgrade() -> None:
    op.drop_table('sync_media')
    op.drop_table('sync_objects')
    op.drop_table('sync_base')
    with op.batch_alter_table('sync_conflicts', schema=None) as batch_op:
        batch_op.drop_index('ix_sync_conflicts_status')
    op.drop_table('sync_conflicts')
    op.drop_table('sync_cursors')
    op.drop_table('sync_remote')
