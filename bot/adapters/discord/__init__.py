"""Discord front end (discord.py 2), one module per concern:

adapter.py     DiscordAdapter: the event handlers (/restyle, the message menu, "@bot prompt"
               replies, the result buttons) and the service's FrontEnd calls, handed on below.
gateway.py     connecting and closing: READY, the shards' gateway sessions under their leases.
commands.py    the application commands on the tree, their options and localisations.
statuses.py    a job's status message: the StatusPlace, its edits (token or bot), one at a time.
delivery.py    how a result, sweep or failure reaches the member: status, channel post, DM.
surfaces.py    where a slash command answers and where a button was pressed.
restyle.py     where a restyle request came: a command, the form, an "@bot prompt" message.
markup.py      a job's buttons (DynamicItem, outliving restarts), the result and status views,
               the "Restyle image" form.
texts.py       what it says: fixed texts, the status and result lines, DISCORD_STYLE.
parsing.py     event → request: pictures in a message (and whether their links may be fetched),
               mentions of the bot, a command from slash options.
connection.py  the discord.py clients and command tree, which hand events to an EventHandler
               (the adapter, without importing it); LibraryUrls (discord.py's REST base and
               gateway, pointed and put back); intents, the interaction's webhook and what the
               bot may do as itself where it was used.
command_sync.py  registering the slash commands where they changed, one process at a time.
files.py       a result's pictures, sized to the upload limit.
upgrades.py    the payments and entitlements sub-router (/upgrade, /link, /grant, /revoke); it
               never imports the adapter.

Importers name the module they need (bot.adapters.discord.adapter.DiscordAdapter): importing
this package loads neither discord.py nor the adapter.
"""
