"""The chat flow, written once for every chat platform.

A platform's adapter (bot/adapters/telegram/, bot/adapters/discord/) turns an event into a
call here and hands over a small surface (surface.py): how to answer the member who asked, how
to end a job's status message, and how that platform writes bold text, a moment or a member.
What is said, and when, is decided here; how it looks on the platform is the surface's."""
