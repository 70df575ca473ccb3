"""Media pipeline: probe, keyframe math, decode, frame processing, encode. No Qt, no storage."""
