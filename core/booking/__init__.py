"""Booking: reserving admin-created slots in an Outlook calendar (seed 004)."""
