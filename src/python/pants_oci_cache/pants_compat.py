"""Every difference between the Pants versions the plugin supports (2.17.1 through 2.33).

The rest of the plugin imports the Pants types that moved from here, and builds an
AuthPluginResult only through `auth_plugin_result`. Every Pants type is constructed by
keyword (AuthPluginResult, WorkunitsCallbackFactory, UnionRule: a dataclass up to 2.28, a
Rust class whose constructor takes the same named arguments from 2.29). Each difference below
names the first version that has it and what Pants changed (read in the Pants source
at the release tags; docs/pants.md, "Supported Pants versions", has the table).
Imports try the newest location first and fall back to the older one.

Unchanged from 2.17.1 through 2.33, so imported directly where they are used:
`pants.base.build_environment.get_buildroot`, `pants.option.global_options.GlobalOptions`,
`pants.option.option_types` (StrOption, StrListOption, EnumOption),
`pants.option.subsystem.Subsystem` (with `rules()`), `pants.engine.rules.rule` and
`collect_rules`, `pants.engine.unions.UnionRule`, and
`pants.engine.streaming_workunit_handler` (WorkunitsCallback, WorkunitsCallbackFactory,
WorkunitsCallbackFactoryRequest); `remote_auth` in a backend's `register.py` is found by
`init/extension_loader.py` and called by keyword (initial_execution_headers,
initial_store_headers, options, env, prior_result) by `DynamicRemoteOptions.from_options`.

Changed, with nothing to adapt:
- 2.29: `UnionRule` is a Rust class, re-exported by pants.engine.unions, whose constructor
  takes the same named arguments (union_base, union_member).
- 2.29: the factories of `WorkunitsCallbackFactoryRequest` members are reached through a
  `@rule(polymorphic=True)` called by name; a member's plain `@rule` that also asks for
  subsystems is still accepted (Pants' own stats_aggregator has one, through 2.33).

Not used by the plugin, because some supported version lacks them:
- 2.25: the Rust options parser replaced the Python one: `Options.bootstrap_option_values()`,
  `Options.get_parser()` and the Subsystem `register_options` class hook are gone. The
  plugin reads its options only with `options.for_scope(...)` and declares them only with
  `option_types` descriptors.
- 2.25: the default `[GLOBAL].remote_store_headers` / `remote_execution_headers` became `{}`
  (Pants now adds its `user-agent` after the auth plugin has run). The plugin copies
  whatever initial headers it is given and adds only its `authorization` header; the daemon
  does not look at `user-agent`.
- 2.32: `Get` and `MultiGet` were removed (rules call other rules by name). The plugin's
  one rule awaits nothing.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Optional

# 2.29: `AuthPluginResult` and `AuthPluginState` moved from pants.option.global_options to the
# new pants.option.bootstrap_options (split out of global_options.py); global_options no
# longer has them, so importing them from there fails and the backend does not load.
try:
    from pants.option.bootstrap_options import AuthPluginResult, AuthPluginState
except ImportError:  # 2.17-2.28
    from pants.option.global_options import AuthPluginResult, AuthPluginState  # type: ignore[no-redef]

# 2.20: `RemoteProvider` (reapi, experimental-file, experimental-github-actions-cache) appeared
# in global_options, with `[GLOBAL].remote_provider` and the `provider` field of
# AuthPluginResult; 2.29 moved it to bootstrap_options with the AuthPlugin types.
RemoteProvider: Any
try:
    from pants.option.bootstrap_options import RemoteProvider
except ImportError:
    try:
        from pants.option.global_options import RemoteProvider  # 2.20-2.28
    except ImportError:  # 2.17-2.19: no providers, REAPI only
        RemoteProvider = None


def _field_names(cls: type) -> List[str]:
    return [field.name for field in dataclasses.fields(cls)]


AUTH_RESULT_FIELDS = tuple(_field_names(AuthPluginResult))

# 2.20: AuthPluginResult got a fourth field, `provider` (default reapi), after
# `execution_headers`, so constructing it positionally past the third field is wrong (all
# construction here is by keyword). Pants takes the provider from the plugin's result and
# ignores `[GLOBAL].remote_provider` when the plugin answers OK: the daemon speaks REAPI, so
# the result always says `reapi`, whatever remote_provider is set to.
HAS_PROVIDER_FIELD = "provider" in AUTH_RESULT_FIELDS


def auth_plugin_result(
    *,
    available: bool,
    store_headers: Dict[str, str],
    execution_headers: Dict[str, str],
    plugin_name: str,
    store_address: Optional[str] = None,
) -> Any:
    """An AuthPluginResult of this Pants version, built by keyword; `provider` is reapi
    where the field exists (2.20+)."""
    fields: Dict[str, Any] = {
        "state": AuthPluginState.OK if available else AuthPluginState.UNAVAILABLE,
        "store_headers": dict(store_headers),
        "execution_headers": dict(execution_headers),
        "plugin_name": plugin_name,
    }
    if store_address is not None:
        fields["store_address"] = store_address
    if HAS_PROVIDER_FIELD and RemoteProvider is not None:
        fields["provider"] = RemoteProvider.reapi
    return AuthPluginResult(**fields)


__all__ = [
    "AUTH_RESULT_FIELDS",
    "AuthPluginResult",
    "AuthPluginState",
    "HAS_PROVIDER_FIELD",
    "RemoteProvider",
    "auth_plugin_result",
]
