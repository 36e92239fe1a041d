"""Discord front end (discord.py 2), one module per concern:

adapter.py   DiscordAdapter: the surface and the event handlers (/restyle, the message menu,
             "@bot prompt" replies, the result buttons), the gateway listener and the shards.
upgrades.py  the payments and entitlements sub-router (/upgrade, /link, /grant, /revoke); it
             never imports the adapter.

Importers name the module they need (bot.adapters.discord.adapter.DiscordAdapter): importing
this package loads neither discord.py nor the adapter.
"""
