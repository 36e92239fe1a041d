"""Every sentence the use cases say to a member, in one place, grouped by the `Reason` of the
refusal that carries it. Each is an English msgid (bot/i18n.py), said in the member's language
with `translator(lang).gettext(TEXT)` where the refusal is made; a front end says a refusal's
`Refused.text` as it is, in its own style. The tier limits, whose sentences depend on counts
(plural forms), are in bot/core/refusals.py; what the chat flow itself says is in bot/chat/texts.py."""

from __future__ import annotations

from bot.i18n import N_

# Said after a refusal a higher tier would lift (Refused.upgrade_hint).
UPGRADE_HINT = N_("Upgrade with /upgrade to skip the queue and get more.")
NO_END_DATE = N_("no end date")  # a tier's expiry, where it has none

# Reason.STORAGE
STORAGE_DOWN = N_("The bot cannot save new requests right now. Try again in a few minutes.")
RESTARTING = N_("The bot is restarting; send your request again in a minute.")

# Reason.FLOOD
TOO_FAST = N_("You are sending commands too fast. Wait {seconds} s and try again.")

# Reason.NOT_FOUND
JOB_GONE = N_("That job is gone; send the picture again with /restyle.")
RESULT_GONE = N_("That result is no longer kept; run /restyle again.")
RESULTS_GONE = N_("Those results are no longer kept; run /restyle again.")
PICTURE_GONE = N_("That picture is no longer kept; send it again with /restyle.")
PLAN_GONE = N_("That plan is no longer on sale; send /upgrade to see the current ones.")
NO_SUCH_PAYMENT = N_("No payment with the charge id {charge}.")

# Reason.NOT_YOURS
NOT_YOURS = N_("Only the member who asked for this picture can use its buttons.")
SWEEP_NOT_YOURS = N_("Only the member who asked for these pictures can use their buttons.")
NOT_YOURS_TO_SEE = N_("Only the member who asked for this picture can see it here.")
INVOICE_NOT_YOURS = N_("This invoice was made for another member. Send /upgrade for one of your own.")

# Reason.NOT_ADMIN
NOT_ADMIN = N_("Only the bot's admins can do that.")

# Reason.COMMAND (an admin's /grant)
UNKNOWN_TIER = N_("Unknown tier {tier}; the tiers are {tiers}.")
BAD_DAYS = N_("Days must be a number from 0 (no end) to {most}.")

# Reason.DOWNGRADE
HAS_BETTER_UNTIL = N_(
    "You already have the {tier} tier until {date}, which gives more than {wanted}. "
    "Buy (or redeem) this again when it has ended."
)
HAS_BETTER = N_(
    "You already have the {tier} tier, which gives more than {wanted}. Buy (or redeem) this again when it has ended."
)

# Reason.PAYLOAD, Reason.PRICE, Reason.PAYMENT_HELD, Reason.REFUNDED
INVOICE_INVALID = N_("This invoice is not valid any more. Send /upgrade for a new one.")
PRICE_CHANGED = N_("The price of this plan has changed. Send /upgrade for a new invoice.")
PAYMENT_HELD = N_(
    "Your payment arrived, but {why}, so your tier was not changed; send /paysupport with the "
    "charge id {charge} and support will sort it out."
)
# {why} of PAYMENT_HELD, by the problem found with the payment
PAYMENT_PROBLEMS = {
    "other_member": N_("its invoice was made for another member"),
    "plan_gone": N_("its plan is no longer on sale"),
    "price": N_("it does not match the price of its plan"),
    "unreadable": N_("the bot cannot read its invoice"),
}
REFUNDED_ALREADY = N_("The payment {charge} was refunded already.")

# Reason.GUESSING, Reason.BAD_CODE, Reason.USED_CODE, Reason.EXPIRED_CODE, Reason.LINKED, Reason.BUSY
TOO_MANY_GUESSES = N_("Too many wrong codes. Try again in {minutes} min.")
BAD_CODE = N_("That code is not valid. Check it and send it again.")
USED_CODE = N_("That code has already been used.")
EXPIRED_CODE = N_("That code expired on {date}.")
BAD_LINK_CODE = N_(
    "That link code is not valid or has expired (they last 10 minutes). Send /link on the other app for a new one."
)
LINKED_ALREADY = N_("These are already linked.")
LINK_FROM_SAME_PLATFORM = N_(
    "That code was made by another {platform} account; send /link here and /link CODE on the other app."
)
LINK_WHILE_BUSY = N_("Wait until your jobs here have finished (or /cancel them), then link.")

# A job that ended without a result (its failure reason, said when it is delivered)
WITHHELD = N_("The result was withheld by this server's safety filter. It did not count against your quota.")
ENGINE_FAILED = N_("The picture engine failed on this job; try again.")
