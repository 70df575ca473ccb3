"""The values an edit may hold, in one place for every layer: the keyframe math and timeline
(pipeline), the project document (services) and the checks on rows from a sync remote
(storage), which may not import one another. Plain constants: importing this costs nothing."""

from __future__ import annotations

ASPECTS: dict[str, tuple[int, int]] = {"9:16": (9, 16), "16:9": (16, 9), "1:1": (1, 1), "4:5": (4, 5)}
PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")
MIN_SPEED, MAX_SPEED = 0.25, 4.0
MAX_ROTATION = 20.0  # degrees either way
MAX_NAME = 200  # characters of a project name
MIN_REGION = 0.5  # seconds: the shortest spotlight region
