"""Small helpers shared by every stage (files, hashing, progress)."""
