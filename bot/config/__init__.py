"""config.toml: its tables and loading it, importable as `from bot.config import Config, load_config`.

Each table is one pydantic dataclass (strict types, `extra="forbid"`, ranges as field
constraints). Three rooms, found by name:

- `checks.py`: what each value must be (`Number`, `Whole`, `Flag`, `Checked(...)`), worded for the error;
- `settings.py`: the tables with their defaults, and `Config` holding them;
- `loading.py`: reading the file and the environment's tokens, and refusing mistakes with a
  `ConfigError` that names the file, the section and the key.
"""

from bot.config.loading import ConfigError, is_loopback, load_config
from bot.config.settings import (
    DEFAULT_STYLES,
    DEFAULT_TIERS,
    AccessSettings,
    BotSettings,
    Config,
    DiscordSettings,
    EngineSettings,
    ModerationSettings,
    PaymentSettings,
    PlanSettings,
    QueueSettings,
    StoreSettings,
    StyleSettings,
    TelegramSettings,
    TierSettings,
    WebSettings,
    is_admin,
)

__all__ = [
    "DEFAULT_STYLES",
    "DEFAULT_TIERS",
    "AccessSettings",
    "BotSettings",
    "Config",
    "ConfigError",
    "DiscordSettings",
    "EngineSettings",
    "ModerationSettings",
    "PaymentSettings",
    "PlanSettings",
    "QueueSettings",
    "StoreSettings",
    "StyleSettings",
    "TelegramSettings",
    "TierSettings",
    "WebSettings",
    "is_admin",
    "is_loopback",
    "load_config",
]
