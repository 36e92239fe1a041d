"""Discord front end (discord.py 2), one module per concern:

adapter.py     DiscordAdapter: the surface and the event handlers (/restyle, the message menu,
               "@bot prompt" replies, the result buttons), the gateway listener and the shards;
               the buttons, the form and the client classes that hand events to it.
texts.py       what it says: fixed texts, the status and result lines, DISCORD_STYLE.
parsing.py     event → request: pictures in a message (and whether their links may be fetched),
               mentions of the bot, a command from slash options.
connection.py  below the events: intents, command sync hashing, the interaction's webhook and
               what the bot may do as itself where an interaction came from.
files.py       a result's pictures, sized to the upload limit.
upgrades.py    the payments and entitlements sub-router (/upgrade, /link, /grant, /revoke); it
               never imports the adapter.

Importers name the module they need (bot.adapters.discord.adapter.DiscordAdapter): importing
this package loads neither discord.py nor the adapter.
"""
