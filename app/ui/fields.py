"""Keys in the editors' number fields, as someone who edits all day expects them.

Qt gives a focused spin box Ctrl+Z / Ctrl+Shift+Z / Ctrl+Y for the undo of its own text, which
is empty once the value is committed: the project's Undo, offered in the Edit menu, then did
nothing until the user clicked elsewhere. And Esc, the window's "Back to the projects", left
the editor with the half-typed value committed on the way out.

:func:`field_keys` makes a field behave: while the user is not typing in it, the undo keys are
the project's; while typing, Esc puts back the value the field had and stays.
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtGui import QKeyEvent, QKeySequence
from PySide6.QtWidgets import QAbstractSpinBox

_UNDO_KEYS = (QKeySequence.StandardKey.Undo, QKeySequence.StandardKey.Redo)
_NOT_TYPING = {Qt.Key.Key_Escape, Qt.Key.Key_Return, Qt.Key.Key_Enter, Qt.Key.Key_Tab, Qt.Key.Key_Backtab,
               Qt.Key.Key_Shift, Qt.Key.Key_Control, Qt.Key.Key_Alt, Qt.Key.Key_Meta}


def _is_undo_key(ev: QKeyEvent) -> bool:
    combo = QKeySequence(ev.keyCombination())
    if combo == QKeySequence("Ctrl+Y"):  # the window's second redo key (not a standard one on Linux)
        return True
    return any(ev.matches(k) for k in _UNDO_KEYS)


class _FieldKeys(QObject):
    def __init__(self, box: QAbstractSpinBox):
        super().__init__(box)
        self.box = box
        self.typing = False
        self.before = box.value()  # the value to put back on Esc
        box.editingFinished.connect(self._done)
        box.installEventFilter(self)

    def _done(self) -> None:
        self.typing = False

    def eventFilter(self, obj, ev) -> bool:  # noqa: N802 - Qt's name
        t = ev.type()
        if t == QEvent.Type.ShortcutOverride:
            if _is_undo_key(ev) and not self.typing:
                return True  # left unaccepted: the Edit menu's Undo / Redo takes the key
            if ev.key() == Qt.Key.Key_Escape and self.typing:
                ev.accept()  # the field's, not the window's "Back"
                return True
        elif t == QEvent.Type.KeyPress:
            if ev.key() == Qt.Key.Key_Escape and self.typing:
                self.typing = False
                self.box.setValue(self.before)
                self.box.selectAll()
                return True
            if ev.key() not in _NOT_TYPING and not _is_undo_key(ev) and not self.typing:
                self.typing, self.before = True, self.box.value()
        return False


def field_keys(*boxes: QAbstractSpinBox) -> None:
    """Give ``boxes`` the keys described above (for the life of each box)."""
    for box in boxes:
        _FieldKeys(box)
