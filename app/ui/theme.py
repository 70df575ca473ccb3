"""Fusion style with a light or dark palette that follows the OS colour scheme."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QGuiApplication, QPalette


def _palette(colors: dict[QPalette.ColorRole, str], disabled_text: str | None = None) -> QPalette:
    p = QPalette()
    for role, col in colors.items():
        p.setColor(role, QColor(col))
    if disabled_text:
        for role in (QPalette.ColorRole.Text, QPalette.ColorRole.WindowText, QPalette.ColorRole.ButtonText):
            p.setColor(QPalette.ColorGroup.Disabled, role, QColor(disabled_text))
    return p


def _dark() -> QPalette:
    return _palette({
        QPalette.ColorRole.Window: "#1f2328", QPalette.ColorRole.WindowText: "#e6e6e6",
        QPalette.ColorRole.Base: "#16191d", QPalette.ColorRole.AlternateBase: "#22262b",
        QPalette.ColorRole.ToolTipBase: "#2b3036", QPalette.ColorRole.ToolTipText: "#e6e6e6",
        QPalette.ColorRole.Text: "#e6e6e6", QPalette.ColorRole.Button: "#2a2f35",
        QPalette.ColorRole.ButtonText: "#e6e6e6", QPalette.ColorRole.BrightText: "#ff5252",
        QPalette.ColorRole.Highlight: "#2f81f7", QPalette.ColorRole.HighlightedText: "#ffffff",
        QPalette.ColorRole.Link: "#58a6ff", QPalette.ColorRole.PlaceholderText: "#8b949e",
        QPalette.ColorRole.Mid: "#3a4048", QPalette.ColorRole.Dark: "#101317",
        QPalette.ColorRole.Light: "#3d444d", QPalette.ColorRole.Midlight: "#30363d",
        QPalette.ColorRole.Shadow: "#000000",
    }, disabled_text="#6e7681")


def _light() -> QPalette:
    return _palette({
        QPalette.ColorRole.Window: "#f3f4f6", QPalette.ColorRole.WindowText: "#1f2328",
        QPalette.ColorRole.Base: "#ffffff", QPalette.ColorRole.AlternateBase: "#f6f8fa",
        QPalette.ColorRole.Text: "#1f2328", QPalette.ColorRole.Button: "#e9ecef",
        QPalette.ColorRole.ButtonText: "#1f2328", QPalette.ColorRole.Highlight: "#0969da",
        QPalette.ColorRole.HighlightedText: "#ffffff", QPalette.ColorRole.PlaceholderText: "#6e7781",
        QPalette.ColorRole.Mid: "#c9ced4", QPalette.ColorRole.Link: "#0969da",
    })


def is_dark(app: QGuiApplication) -> bool:
    try:
        return app.styleHints().colorScheme() == Qt.ColorScheme.Dark
    except AttributeError:  # Qt < 6.5
        return app.palette().window().color().lightness() < 128


def apply(app, force: str | None = None) -> None:
    """Fusion + palette; follows the OS scheme (and its changes) unless ``force`` is light/dark."""
    app.setStyle("Fusion")

    def update(*_a):
        dark = force == "dark" if force else is_dark(app)
        app.setPalette(_dark() if dark else _light())

    update()
    if not force:
        try:
            app.styleHints().colorSchemeChanged.connect(update)
        except AttributeError:  # pragma: no cover
            pass
