"""Render the app icon (an SVG) into reelforge.ico (Windows) and reelforge.icns (macOS) with Qt.

    python packaging/make_icons.py resources/icons/reelforge.svg OUT_DIR

pyinstaller.spec runs it at build time. Only PySide6 is needed (no Pillow, no iconutil): Qt
renders the SVG at each size and this script writes the two containers itself (ICO: 32-bit
bitmaps below 256 px and a PNG at 256; ICNS: PNG entries from 16 to 1024 px).
"""

from __future__ import annotations

import os
import struct
import sys
from pathlib import Path

ICO_SIZES = (16, 20, 24, 32, 40, 48, 64, 128, 256)
# ICNS element types that hold PNG data, and their pixel sizes (ic11-ic14 are the @2x variants)
ICNS_TYPES = ((b"icp4", 16), (b"icp5", 32), (b"icp6", 64), (b"ic07", 128), (b"ic08", 256), (b"ic09", 512),
              (b"ic10", 1024), (b"ic11", 32), (b"ic12", 64), (b"ic13", 256), (b"ic14", 512))


def render(svg: Path, size: int):
    """The SVG as a size x size QImage (ARGB32, not premultiplied), transparent around it."""
    from PySide6.QtCore import QRectF, Qt
    from PySide6.QtGui import QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    renderer = QSvgRenderer(str(svg))
    if not renderer.isValid():
        raise ValueError(f"{svg}: not an SVG Qt can render")
    img = QImage(size, size, QImage.Format.Format_ARGB32_Premultiplied)
    img.fill(Qt.GlobalColor.transparent)
    painter = QPainter(img)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
    renderer.render(painter, QRectF(0, 0, size, size))
    painter.end()
    return img.convertToFormat(QImage.Format.Format_ARGB32)


def png_bytes(img) -> bytes:
    from PySide6.QtCore import QBuffer, QByteArray, QIODevice

    data = QByteArray()
    buf = QBuffer(data)
    buf.open(QIODevice.OpenModeFlag.WriteOnly)
    if not img.save(buf, "PNG"):
        raise RuntimeError("Qt could not write a PNG")
    buf.close()
    return bytes(data.data())


def dib_bytes(img) -> bytes:
    """An ICO entry as a 32-bit BGRA device-independent bitmap: the header says twice the height
    (the colour rows bottom-up, then a 1-bit AND mask, all zero: the alpha channel decides)."""
    w, h = img.width(), img.height()
    raw = bytes(img.constBits())  # ARGB32 in memory on little-endian machines: B, G, R, A
    stride = img.bytesPerLine()
    rows = b"".join(raw[y * stride: y * stride + w * 4] for y in reversed(range(h)))
    mask = b"\0" * (((w + 31) // 32) * 4 * h)
    header = struct.pack("<IiiHHIIiiII", 40, w, h * 2, 1, 32, 0, len(rows) + len(mask), 0, 0, 0, 0)
    return header + rows + mask


def write_ico(svg: Path, out: Path) -> None:
    images = [png_bytes(render(svg, s)) if s >= 256 else dib_bytes(render(svg, s)) for s in ICO_SIZES]
    offset = 6 + 16 * len(images)
    head = struct.pack("<HHH", 0, 1, len(images))
    entries = b""
    for s, data in zip(ICO_SIZES, images, strict=True):
        entries += struct.pack("<BBBBHHII", s % 256, s % 256, 0, 0, 1, 32, len(data), offset)
        offset += len(data)
    out.write_bytes(head + entries + b"".join(images))


def write_icns(svg: Path, out: Path) -> None:
    pngs = {s: png_bytes(render(svg, s)) for s in sorted({s for _, s in ICNS_TYPES})}
    body = b"".join(kind + struct.pack(">I", 8 + len(pngs[s])) + pngs[s] for kind, s in ICNS_TYPES)
    out.write_bytes(b"icns" + struct.pack(">I", 8 + len(body)) + body)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    svg, out_dir = Path(argv[0]), Path(argv[1])
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # no window is opened; also on a build server
    from PySide6.QtGui import QGuiApplication

    app = QGuiApplication.instance() or QGuiApplication([])  # noqa: F841 - Qt's painting wants one
    out_dir.mkdir(parents=True, exist_ok=True)
    write_ico(svg, out_dir / "reelforge.ico")
    write_icns(svg, out_dir / "reelforge.icns")
    print(out_dir / "reelforge.ico")
    print(out_dir / "reelforge.icns")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
