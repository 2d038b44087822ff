"""Why the plugin builds no model: ``EFFDET_PLUGIN_DISABLE`` is set, or the host's version is not supported.

Read by the activation, by every host adapter and by the command line (which prints these as one line).
"""

from __future__ import annotations

import os

VARIABLE = "EFFDET_PLUGIN_DISABLE"


class PluginUnavailableError(RuntimeError):
    """The plugin cannot build this model here (the message says why and what to do)."""


class PluginDisabledError(PluginUnavailableError):
    """A plugin model was loaded while ``EFFDET_PLUGIN_DISABLE`` is set."""


class UnsupportedUltralyticsError(PluginUnavailableError):
    """The installed ultralytics is outside the range the Ultralytics adapter was tested on."""


def disabled() -> bool:
    """Whether ``EFFDET_PLUGIN_DISABLE`` turns auto-activation off."""
    return os.environ.get(VARIABLE, "").strip().lower() in {"1", "true", "yes", "on"}


def disabled_error(what: str) -> PluginDisabledError:
    """The message for a plugin model met while the plugin is off."""
    return PluginDisabledError(
        f"{what}, but effdet-plugin is disabled ({VARIABLE}={os.environ.get(VARIABLE, '')}); unset {VARIABLE} "
        f"or call effdet_plugin.register() first"
    )
