"""Small helpers shared by every stage (files, array content keys, progress, significance, time axes)."""
