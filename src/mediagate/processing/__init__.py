"""Sanitizing media: pure functions on files (no network), images with Pillow, video with ffmpeg."""
