"""`serve` listens before its stack is open (cache_image/opening_stack.py): calls wait for
the stack and then reach it, a stack that failed to open makes them errors that say why,
and the status does not wait."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import List, Optional

import pytest

from action_scenario import make_action, store_action
from oci_cache.cache_image.opening_stack import OpeningStack
from oci_cache.cache_image.serving_stack import ServingStack
from oci_cache.errors import UnavailableError
from oci_cache.store.completeness import CompletenessCheckingActionCache
from oci_cache.store.local_store import LocalStore


def local_stack(path: Path) -> ServingStack:
    store = LocalStore(path, 1 << 30)
    return ServingStack(store, store, CompletenessCheckingActionCache(store, store))


def test_a_call_made_while_opening_waits_for_the_stack_and_gets_its_answer(tmp_path: Path) -> None:
    stack = local_stack(tmp_path / "store")
    recorded = make_action(1)
    store_action(stack.local, recorded)
    opening = OpeningStack(can_export=False, has_imports=False, max_bytes=1 << 30)
    answers: List[Optional[bytes]] = []
    caller = threading.Thread(target=lambda: answers.append(opening.action_cache.get_action_result(recorded.action)))
    caller.start()
    time.sleep(0.2)
    assert caller.is_alive() and answers == [], "the call waits while the stack opens"
    opening.opened(stack)
    caller.join(5)
    assert answers == [recorded.result]
    some_blob = next(iter(recorded.outputs))
    assert opening.blobs.read_bytes(some_blob) == recorded.outputs[some_blob]
    assert list(opening.local.iter_action_digests()) == [recorded.action]
    opening.close()


def test_a_stack_that_failed_to_open_makes_every_call_an_error_that_says_why(tmp_path: Path) -> None:
    opening = OpeningStack(can_export=True, has_imports=True, max_bytes=1 << 30)
    opening.failed("cannot open the store in /x: Permission denied")
    for call in (
        lambda: opening.blobs.contains(make_action(1).action),
        lambda: opening.action_cache.get_action_result(make_action(1).action),
        lambda: opening.imports.images(),
        lambda: opening.export(),
    ):
        with pytest.raises(UnavailableError, match="Permission denied"):
            call()


def test_a_stack_too_slow_to_open_is_an_error_not_a_hang(tmp_path: Path) -> None:
    opening = OpeningStack(can_export=False, has_imports=False, max_bytes=1 << 30, wait_seconds=0.05)
    started = time.monotonic()
    with pytest.raises(UnavailableError, match="still opening"):
        opening.action_cache.get_action_result(make_action(1).action)
    assert time.monotonic() - started < 2


def test_the_status_waits_a_little_for_the_stack_then_reports_an_empty_store(tmp_path: Path) -> None:
    opening = OpeningStack(can_export=True, has_imports=True, max_bytes=123, wait_seconds=30, status_wait_seconds=0.1)
    started = time.monotonic()
    status = opening.status()
    assert time.monotonic() - started < 5
    assert status.local_store.bytes_used == 0 and status.local_store.max_bytes == 123 and status.imports == ()
    assert opening.can_export and opening.imports is not None


def test_the_status_of_a_stack_opened_meanwhile_is_the_stacks(tmp_path: Path) -> None:
    stack = local_stack(tmp_path / "store")
    store_action(stack.local, make_action(1))
    opening = OpeningStack(can_export=False, has_imports=False, max_bytes=1 << 30)
    threading.Timer(0.2, lambda: opening.opened(stack)).start()
    assert opening.status().local_store.bytes_used > 0
    opening.close()


def test_without_cache_from_there_are_no_imports_to_wait_for(tmp_path: Path) -> None:
    opening = OpeningStack(can_export=False, has_imports=False, max_bytes=1 << 30)
    assert opening.imports is None


def test_the_opened_stack_must_agree_on_exporting(tmp_path: Path) -> None:
    opening = OpeningStack(can_export=True, has_imports=False, max_bytes=1 << 30)
    stack = local_stack(tmp_path / "store")
    with pytest.raises(ValueError):
        opening.opened(stack)
    stack.close()
