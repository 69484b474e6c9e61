from __future__ import annotations

from oci_cache.oci.token_auth import merge_scopes, scopes_cover


def test_push_token_covers_pull_but_not_the_reverse() -> None:
    assert scopes_cover(["repository:a:pull,push"], ["repository:a:pull"])
    assert not scopes_cover(["repository:a:pull"], ["repository:a:pull,push"])
    assert not scopes_cover(["repository:a:pull,push"], ["repository:b:pull"])
    assert scopes_cover(["repository:a:*"], ["repository:a:delete"])
    assert scopes_cover(["repository:a:pull,push", "repository:b:pull"], ["repository:a:push", "repository:b:pull"])


def test_merge_scopes_joins_actions_per_resource() -> None:
    merged = merge_scopes(["repository:a:pull"], ["repository:a:push", "repository:b:pull"])
    assert merged == frozenset({"repository:a:pull,push", "repository:b:pull"})
