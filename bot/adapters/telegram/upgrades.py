"""Telegram: /upgrade with Telegram Stars, redeem codes, /link, /paysupport, /terms and the
admins' /refund, /grant and /revoke.

Kept beside bot/adapters/telegram/adapter.py (which installs these handlers) so payments read as one
piece. Stars facts: currency XTR, provider_token "", one price line; a pre-checkout query must
be answered within 10 s; subscriptions exist only as invoice links with a 30-day period.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, LabeledPrice, Update, User
from telegram.error import Forbidden, TelegramError
from telegram.ext import (
    Application,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    PreCheckoutQueryHandler,
    filters,
)

from bot.adapters.telegram.replies import answer
from bot.chat import texts
from bot.commands import MAX_PLATFORM_ID, whole_number
from bot.config import Config
from bot.core.types import Member, MemberView, PaymentResult, Reason, Refused, UpgradeInfo
from bot.i18n import N_, Translator, translator
from bot.service import RestyleService
from bot.upgrades import MAX_GRANT_DAYS, PlanView, looks_like_redeem_code

log = logging.getLogger("bot.telegram")

SUBSCRIPTION_PERIOD_S = 2592000  # 30 days: the only period Telegram Stars subscriptions have
PRE_CHECKOUT_BUDGET_S = 8.0  # Telegram waits 10 s for the answer; keep a margin for the network
BUY_DATA = r"^buy:[a-z0-9_-]{1,32}$"
ENGLISH = translator(None)
GRANT_USAGE = N_(
    "Usage: /grant ID TIER DAYS, for example /grant 12345 pro 30 (DAYS from 0, no end, to {most}); "
    "ID may be discord:ID."
)
NO_PAYMENTS = N_("The admin has not set up payments for this bot, so upgrades are not on sale here.")
LINKED = N_("Linked: both apps share one account now.")
CODE_ACCEPTED = N_("Code accepted.")


def _when(timestamp: float | None, tr: Translator = ENGLISH) -> str:
    if timestamp is None:
        return tr.gettext("with no end date")
    return tr.gettext("until {date}").format(date=datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M UTC"))


def upgrade_text(info: UpgradeInfo, *, can_redeem: bool = True, tr: Translator = ENGLISH) -> str:
    if info.tier != "free":
        lines = [
            tr.gettext("You are on the {tier} tier ({until}).").format(
                tier=info.tier, until=_when(info.tier_expires_at, tr)
            )
        ]
    else:
        lines = [tr.gettext("You are on the {tier} tier.").format(tier=info.tier)]
    lines.append("")
    for name, perks in info.tiers:
        lines.append(f"{name}: {', '.join(perks)}")
    lines.append("")
    if info.plans:
        lines.append(tr.gettext("Plans:"))
        for plan in info.plans:
            lines.append(f"• {plan.title_in(tr)}: {plan.price_in(tr)}")
        lines.append(tr.gettext("Press a plan to pay with Telegram Stars. /terms and /paysupport tell the rest."))
    else:
        lines.append(tr.gettext(NO_PAYMENTS))
    if can_redeem:
        lines.append(tr.gettext("Have a code? Send /upgrade CODE."))
    return "\n".join(lines)


def plan_buttons(plans: list[PlanView], tr: Translator = ENGLISH) -> InlineKeyboardMarkup | None:
    if not plans:
        return None
    return InlineKeyboardMarkup(
        [
            [InlineKeyboardButton(f"{plan.title_in(tr)} · {plan.price_in(tr)}", callback_data=f"buy:{plan.name}")]
            for plan in plans
        ]
    )


def changed_text(view: MemberView, what: str, tr: Translator = ENGLISH) -> str:
    """`what` (said already) and the member's tier after it."""
    if view.tier != "free":
        after = tr.gettext("You are on the {tier} tier {until}.").format(
            tier=view.tier, until=_when(view.tier_expires_at, tr)
        )
    else:
        after = tr.gettext("You are on the free tier.")
    return f"{what} {after}"


def parse_target(text: str) -> Member | None:
    """An admin names a member as 12345 (Telegram), telegram:12345 or discord:12345."""
    platform, _, user_id = text.partition(":")
    if not user_id:
        platform, user_id = "telegram", platform
    number = whole_number(user_id, 1, MAX_PLATFORM_ID)
    if platform not in ("telegram", "discord") or number is None:
        return None
    return Member(platform, str(number))


class TelegramUpgrades:
    """/upgrade, /link, /redeem, /grant, /revoke, /refund and Stars payments: a sub-router the
    adapter installs on its application. It never imports the adapter; what it needs comes in
    as arguments."""

    def __init__(self, service: RestyleService, config: Config, bot: Bot, member_of: Callable[[User], Member]) -> None:
        self.service = service
        self.config = config
        self.bot = bot
        self.member_of = member_of

    def install(self, app: Application, only_new: Any) -> None:
        app.add_handler(CommandHandler("link", self.on_link, filters=only_new))
        app.add_handler(CommandHandler("paysupport", self.on_paysupport, filters=only_new))
        app.add_handler(CommandHandler("terms", self.on_terms, filters=only_new))
        app.add_handler(CommandHandler("refund", self.on_refund, filters=only_new))
        app.add_handler(CommandHandler("grant", self.on_grant, filters=only_new))
        app.add_handler(CommandHandler("revoke", self.on_revoke, filters=only_new))
        app.add_handler(CallbackQueryHandler(self.on_buy, pattern=BUY_DATA))
        app.add_handler(PreCheckoutQueryHandler(self.on_pre_checkout))
        app.add_handler(MessageHandler(filters.SUCCESSFUL_PAYMENT, self.on_successful_payment))
        app.add_handler(MessageHandler(filters.StatusUpdate.REFUNDED_PAYMENT, self.on_refunded_payment))

    async def _say(self, update: Update, text: str, reply_markup: InlineKeyboardMarkup | None = None) -> None:
        if update.effective_message is not None:
            await answer(self.bot, update.effective_message, text, reply_markup)

    # Members -----------------------------------------------------------------------------------

    async def on_upgrade(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message, user = update.effective_message, update.effective_user
        if message is None or user is None or user.is_bot:
            return
        member = self.member_of(user)
        tr = translator(member.lang)
        args = list(context.args or [])
        if args:
            code = " ".join(args)
            result = await self.service.codes.redeem(member, code)
            if isinstance(result, Refused):
                await self._say(update, result.text)
            else:
                await self._say(update, changed_text(result, tr.gettext(CODE_ACCEPTED), tr))
            return
        info = await self.service.billing.plans_for(member)
        await self._say(update, upgrade_text(info, tr=tr), reply_markup=plan_buttons(info.plans, tr))

    async def on_buy(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        if query is None or not query.data:
            return
        member = self.member_of(query.from_user)
        tr = translator(member.lang)  # the payer's: Telegram shows the invoice's title and description to them
        result = await self.service.billing.invoice_payload(member, query.data.partition(":")[2])
        if isinstance(result, Refused):
            await _quietly(query.answer(result.text, show_alert=True))
            return
        plan, payload = result
        await _quietly(query.answer())
        chat = query.message.chat if query.message is not None else None
        # Invoices go to the member's private chat: in a group anyone could press Pay, and the
        # payload is signed for the member who asked.
        chat_id = query.from_user.id
        title, price = plan.title_in(tr), plan.price_in(tr)
        prices = [LabeledPrice(title, int(plan.stars or 0))]
        description = invoice_description(plan, tr)
        try:
            if plan.subscription:
                link = await self.bot.create_invoice_link(
                    title=title, description=description, payload=payload, provider_token="",
                    currency="XTR", prices=prices, subscription_period=SUBSCRIPTION_PERIOD_S,
                )  # fmt: skip
                await self.bot.send_message(
                    chat_id,
                    tr.gettext("{title}: {price}, renewed every 30 days until you cancel it in Telegram.")
                    .format(title=title, price=price),
                    reply_markup=InlineKeyboardMarkup(
                        [[InlineKeyboardButton(tr.gettext("Subscribe · {price}").format(price=price), url=link)]]
                    ),
                )  # fmt: skip
            else:
                await self.bot.send_invoice(
                    chat_id, title=title, description=description, payload=payload, provider_token="",
                    currency="XTR", prices=prices,
                )  # fmt: skip
        except Forbidden:
            if chat is not None:
                message = query.message
                thread = message.message_thread_id if getattr(message, "is_topic_message", False) else None  # type: ignore[union-attr]  # getattr rules out None
                await _quietly(self.bot.send_message(
                    chat.id, tr.gettext("{name}, open a private chat with me and send /upgrade there to pay.")
                    .format(name=query.from_user.first_name),
                    message_thread_id=thread,
                ))  # fmt: skip
        except TelegramError as exc:
            log.warning("could not send an invoice for %s: %s", plan.name, exc)
            await _quietly(
                self.bot.send_message(chat_id, tr.gettext("Telegram would not make the invoice; try again later."))
            )

    async def on_pre_checkout(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.pre_checkout_query
        if query is None:
            return
        member = self.member_of(query.from_user)
        try:
            refused = await asyncio.wait_for(
                self.service.billing.check_pre_checkout(
                    member, query.invoice_payload, query.total_amount, query.currency
                ),
                PRE_CHECKOUT_BUDGET_S,
            )
        except Exception:
            log.exception("pre-checkout check failed; declining")
            refused = Refused(
                Reason.STORAGE,
                translator(member.lang).gettext(
                    "The bot cannot take payments right now; nothing was charged. Try again later."
                ),
            )
        try:
            if refused is None:
                await query.answer(ok=True)
            else:
                await query.answer(ok=False, error_message=refused.text)
        except TelegramError as exc:
            log.warning("could not answer a pre-checkout query: %s", exc)

    async def on_successful_payment(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message, user = update.effective_message, update.effective_user
        if message is None or user is None or message.successful_payment is None:
            return
        paid = message.successful_payment
        expiry = paid.subscription_expiration_date
        member = self.member_of(user)
        tr = translator(member.lang)
        result = await self.service.billing.record_payment(
            member,
            paid.invoice_payload,
            paid.telegram_payment_charge_id,
            paid.total_amount,
            currency=paid.currency,
            subscription_expiry=expiry.timestamp() if isinstance(expiry, datetime) else expiry,
            recurring=bool(paid.is_recurring and not paid.is_first_recurring),
        )
        if isinstance(result, Refused):
            if not result.quiet:  # quiet: the same charge was held before, and the member told
                await self._say(update, result.text)
        elif not result.duplicate:
            what = (
                tr.gettext("Subscription renewed, thank you!")
                if paid.is_recurring and not paid.is_first_recurring
                else tr.gettext("Payment received, thank you!")
            )
            charge = tr.gettext("Charge id: {charge}").format(charge=paid.telegram_payment_charge_id)
            await self._say(update, changed_text(result.view, what, tr) + "\n" + charge)

    async def on_link(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message, user = update.effective_message, update.effective_user
        if message is None or user is None or user.is_bot:
            return
        member = self.member_of(user)
        tr = translator(member.lang)
        args = list(context.args or [])
        if args:
            result = await self.service.codes.link_finish(member, " ".join(args))
            text = result.text if isinstance(result, Refused) else changed_text(result, tr.gettext(LINKED), tr)
            await self._say(update, text)
            return
        if message.chat.type != "private":
            await self._say(update, tr.gettext("Send /link to me in a private chat: the code must stay secret."))
            return
        started = await self.service.codes.link_start(member)
        if isinstance(started, Refused):
            await self._say(update, started.text)
            return
        code, ttl = started
        await self._say(
            update,
            tr.gettext("Your link code: {code}\nSend /link {code} to this bot on the other app (Discord) within "
                       "{minutes} minutes. Both will then share your tier, its expiry and your daily restyles.")
            .format(code=code, minutes=int(ttl // 60)),
        )  # fmt: skip

    async def on_paysupport(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        # The admin's own words; the default ones (bot/config/settings.py) are in the catalogue.
        await self._say(update, self._tr(update).gettext(self.config.payments.support))

    async def on_terms(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        await self._say(update, self._tr(update).gettext(self.config.payments.terms))

    @staticmethod
    def _tr(update: Update) -> Translator:
        user = update.effective_user
        return translator(user.language_code if user is not None else None)

    # Admins ------------------------------------------------------------------------------------

    async def _admin(self, update: Update, command: str) -> Member | None:
        """The admin who sent `command`; None (after a polite refusal to anyone else) otherwise."""
        user = update.effective_user
        if update.effective_message is None or user is None or user.is_bot:
            return None
        admin = self.member_of(user)
        if not self.service.admin.is_admin(admin):
            await self._say(update, translator(admin.lang).gettext(texts.NOT_ADMIN).format(command=command))
            return None
        return admin

    async def on_refund(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        admin = await self._admin(update, "refund")
        if admin is None:
            return
        tr = translator(admin.lang)
        args = list(context.args or [])
        if len(args) != 1:
            await self._say(update, tr.gettext("Usage: /refund CHARGE_ID (from the payment's confirmation message)."))
            return
        row = await self.service.billing.payment_to_refund(admin, args[0])
        if isinstance(row, Refused):
            await self._say(update, row.text)
            return
        if row["platform"] != "telegram" or not row["charge_id"].startswith("telegram-stars:"):
            await self._say(
                update, tr.gettext("That payment was not made with Telegram Stars; refund it where it was made.")
            )
            return
        user_id, charge = int(row["platform_user_id"]), row["charge_id"].partition(":")[2]
        try:
            await self.bot.refund_star_payment(user_id, charge)
        except TelegramError as exc:
            refused = tr.gettext("Telegram refused the refund: {error}. The tier was left as it is.")
            await self._say(update, refused.format(error=exc))
            return
        result = await self.service.billing.refund(admin, row["charge_id"])
        refunded = tr.gettext("Refunded {stars} ⭐ to {member}.").format(
            stars=row["amount"], member=row["platform_user_id"]
        )
        text = result.text if isinstance(result, Refused) else changed_text(result, refunded, tr)
        plan = self.config.plans.get(row["plan"])
        if row.get("subscription_expires_at") is not None or (plan is not None and plan.subscription):
            # A refund alone leaves the subscription renewing (and charging) every 30 days.
            try:
                await self.bot.edit_user_star_subscription(user_id, charge, is_canceled=True)
                text += " " + tr.gettext("Their subscription is cancelled too.")
            except TelegramError as exc:
                log.warning("could not cancel the subscription of charge %s: %s", charge, exc)
                text += " " + tr.gettext(
                    "Telegram would not cancel their subscription ({error}); they can cancel it in Telegram."
                ).format(error=exc)
        await self._say(update, text)

    async def on_refunded_payment(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """A refund Telegram made (or confirms): the time that payment bought is taken back once."""
        message, user = update.effective_message, update.effective_user
        if message is None or user is None or message.refunded_payment is None:
            return
        charge = message.refunded_payment.telegram_payment_charge_id
        member = self.member_of(user)
        view = await self.service.billing.refunded_elsewhere(member, f"telegram-stars:{charge}")
        if view is not None:
            tr = translator(member.lang)
            refunded = tr.gettext("Your payment {charge} was refunded.").format(charge=charge)
            await self._say(update, changed_text(view, refunded, tr))

    async def on_grant(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        admin = await self._admin(update, "grant")
        if admin is None:
            return
        args = list(context.args or [])
        target = parse_target(args[0]) if args else None
        days = whole_number(args[2], 0, MAX_GRANT_DAYS) if len(args) == 3 else None
        tr = translator(admin.lang)
        if target is None or days is None:
            await self._say(update, tr.gettext(GRANT_USAGE).format(most=MAX_GRANT_DAYS))
            return
        result = await self.service.billing.grant(admin, target, args[1].lower(), days)
        await self._say(
            update, result.text if isinstance(result, Refused) else changed_text(result, f"{target.key}:", tr)
        )

    async def on_revoke(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        admin = await self._admin(update, "revoke")
        if admin is None:
            return
        args = list(context.args or [])
        target = parse_target(args[0]) if len(args) == 1 else None
        tr = translator(admin.lang)
        if target is None:
            await self._say(update, tr.gettext("Usage: /revoke ID, for example /revoke 12345 (or discord:12345)."))
            return
        result = await self.service.billing.revoke(admin, target)
        await self._say(
            update, result.text if isinstance(result, Refused) else changed_text(result, f"{target.key}:", tr)
        )


def invoice_description(plan: PlanView, tr: Translator = ENGLISH) -> str:
    """What Telegram shows the payer under the invoice's title (1-255 characters): the plan's
    period and perks, in the payer's language (the plan's perks were made in it)."""
    if plan.subscription:
        head = tr.gettext("{tier} tier for a month, renewed monthly: ").format(tier=plan.tier)
    else:
        head = tr.ngettext("{tier} tier for {count} day: ", "{tier} tier for {count} days: ", plan.days).format(
            tier=plan.tier, count=plan.days
        )
    return (head + ", ".join(plan.perks))[:255]


async def _quietly(awaitable: Any) -> None:
    try:
        await awaitable
    except TelegramError as exc:
        log.info("Telegram call failed (%s)", exc)


__all__ = ["TelegramUpgrades", "upgrade_text", "looks_like_redeem_code", "PaymentResult"]
