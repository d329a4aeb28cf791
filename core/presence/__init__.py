"""Presence for a switchboard: busy while the calendar says busy (seed 002)."""
