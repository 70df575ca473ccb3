"""Reelforge: a desktop editor for highlight reels."""

__version__ = "0.1.0"
