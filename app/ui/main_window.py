"""The main window: the project grid."""

from __future__ import annotations

from PySide6.QtCore import QAbstractListModel, QModelIndex, QSize, Qt
from PySide6.QtWidgets import QLabel, QListView, QMainWindow, QStackedWidget

from app.services.library import Library


class ProjectListModel(QAbstractListModel):
    def __init__(self, lib: Library, parent=None):
        super().__init__(parent)
        self.lib = lib
        self.rows: list[dict] = []
        self.refresh()

    def refresh(self) -> None:
        self.beginResetModel()
        self.rows = self.lib.list_projects()
        self.endResetModel()

    def rowCount(self, parent=QModelIndex()):  # noqa: N802 - Qt API
        return 0 if parent.isValid() else len(self.rows)

    def data(self, index, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        row = self.rows[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            return f"{row['name']}\n{row['status'].replace('_', ' ')}"
        if role == Qt.ItemDataRole.UserRole:
            return row
        return None


class MainWindow(QMainWindow):
    def __init__(self, lib: Library):
        super().__init__()
        self.lib = lib
        self.setWindowTitle("Reelforge")
        self.resize(1200, 800)
        self.model = ProjectListModel(lib, self)
        self.grid = QListView()
        self.grid.setViewMode(QListView.ViewMode.IconMode)
        self.grid.setResizeMode(QListView.ResizeMode.Adjust)
        self.grid.setGridSize(QSize(240, 200))
        self.grid.setModel(self.model)
        self.empty = QLabel("No projects yet.\nDrop video files here to start one.")
        self.empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.stack = QStackedWidget()
        self.stack.addWidget(self.empty)
        self.stack.addWidget(self.grid)
        self.setCentralWidget(self.stack)
        self.update_empty_state()

    def update_empty_state(self) -> None:
        self.stack.setCurrentWidget(self.grid if self.model.rowCount() else self.empty)
