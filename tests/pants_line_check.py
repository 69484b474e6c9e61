"""Loads the plugin as one Pants line would and uses every hook Pants calls; run as a script by
tests/unit/test_pants_versions.py with PYTHONPATH=<stub pants tree>:<src/python>:

    python tests/pants_line_check.py LINE BUILDROOT

It exits non-zero (with the traceback) when anything the plugin does is not there in that
line's API. No daemon is started: `ensure_daemon` is replaced by a fake handle.
"""

from __future__ import annotations

import json
import sys
from types import SimpleNamespace


def main(line: str, buildroot: str) -> None:
    import pants.option.global_options as global_options_module
    from pants.engine.streaming_workunit_handler import WorkunitsCallback, WorkunitsCallbackFactoryRequest
    from pants.engine.unions import UnionRule
    from pants.option.options import Options

    import pants_oci_cache.register as register  # what extension_loader imports for backend_packages
    from pants_oci_cache import auth, end_of_run, pants_compat
    from pants_oci_cache.subsystem import OciCacheSubsystem

    rules = list(register.rules())
    assert UnionRule(WorkunitsCallbackFactoryRequest, end_of_run.OciCacheCallbackFactoryRequest) in rules, rules
    assert ("subsystem", OciCacheSubsystem) in rules, rules

    plugin_options = OciCacheSubsystem.option_defaults()
    plugin_options.update(python=sys.executable, state_dir=f"{buildroot}/state")
    global_defaults = global_options_module.GlobalOptions.option_defaults()
    global_defaults.update(remote_cache_read=True, remote_cache_write=True)
    options = Options({"oci-cache": plugin_options, "": global_defaults})

    handle = SimpleNamespace(address="grpc://127.0.0.1:4242", token="t0ken", status=None, started=True)
    auth.ensure_daemon = lambda settings: handle  # type: ignore[assignment]
    initial_headers = dict(global_defaults["remote_store_headers"])
    # As DynamicRemoteOptions.from_options calls it, in every line: by keyword.
    result = register.remote_auth(
        initial_execution_headers=dict(global_defaults["remote_execution_headers"]),
        initial_store_headers=initial_headers,
        options=options,
        env={"HOME": buildroot, "PATH": ""},
        prior_result=None,
    )
    assert result.is_available, result
    assert result.store_address == handle.address, result
    assert result.store_headers == {**initial_headers, "authorization": "Bearer t0ken"}, result
    provider = getattr(result, "provider", None)
    if pants_compat.HAS_PROVIDER_FIELD:
        assert provider is pants_compat.RemoteProvider.reapi, result

    # The end-of-run rule, driven as the engine would (it must await nothing).
    subsystem = OciCacheSubsystem(SimpleNamespace(**plugin_options))
    global_options = global_options_module.GlobalOptions(SimpleNamespace(**global_defaults))
    coroutine = end_of_run.oci_cache_callback_factory(end_of_run.OciCacheCallbackFactoryRequest(), subsystem, global_options)
    try:
        coroutine.send(None)
        raise AssertionError("the end-of-run rule awaited something")
    except StopIteration as done:
        factory = done.value
    callback = factory.callback_factory()
    assert isinstance(callback, WorkunitsCallback) and callback.can_finish_async is False, callback

    # A daemon that cannot start: UNAVAILABLE, built for this line too.
    def unavailable(settings: object) -> object:
        raise auth.DaemonUnavailable("no daemon in this check")

    auth.ensure_daemon = unavailable  # type: ignore[assignment]
    off = register.remote_auth(
        initial_execution_headers={}, initial_store_headers={}, options=options, env={"PATH": ""}, prior_result=result
    )
    assert not off.is_available and off.store_address is None, off
    print(json.dumps({"line": line, "python": sys.version.split()[0], "provider": getattr(provider, "value", None)}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
