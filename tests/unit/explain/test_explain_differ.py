"""What differs between a cached action and a missed one: changed arguments, variables
added/removed/changed (secret values only masked), platform, working directory, output
paths, timeout, and input files by path when both trees are known, else the input roots
(oci_cache.explain.differ)."""

from __future__ import annotations

from explain_builders import KEY, bazel_genrule, command, digest_text, pants_pytest, view

from oci_cache.explain.differ import Difference, argument_differences, differences, masked_incomparable
from oci_cache.secret_masking.masked_values import MaskingKey, is_masked, mask_value


def test_one_changed_argument_is_one_argv_difference_at_its_position() -> None:
    before = view(command(["sh", "-c", "echo hello > out.txt"], output_files=["out.txt"]))
    after = view(command(["sh", "-c", "echo bonjour > out.txt"], output_files=["out.txt"]))

    assert differences(before, after) == [Difference("argv", "argv[2]", "echo hello > out.txt", "echo bonjour > out.txt")]


def test_an_inserted_argument_is_one_difference_not_a_shift_of_the_rest() -> None:
    assert argument_differences(["a", "b", "c"], ["a", "--new", "b", "c"]) == [
        Difference("argv", "argv[1]", None, "--new")
    ]
    assert argument_differences(["a", "--old", "b"], ["a", "b"]) == [Difference("argv", "argv[1]", "--old", None)]


def test_environment_variables_added_removed_and_changed_are_named() -> None:
    before = view(command(["x"], {"PATH": "/bin", "GONE": "1", "SAME": "s"}))
    after = view(command(["x"], {"PATH": "/usr/bin:/bin", "NEW": "2", "SAME": "s"}))

    assert differences(before, after) == [
        Difference("env", "GONE", "1", None),
        Difference("env", "NEW", None, "2"),
        Difference("env", "PATH", "/bin", "/usr/bin:/bin"),
    ]


def test_a_changed_secret_looking_variable_is_reported_with_masked_values_only() -> None:
    before = view(pants_pytest("a_test.py", {"DEMO_API_TOKEN": "hunter2-old"}))
    after = view(pants_pytest("a_test.py", {"DEMO_API_TOKEN": "hunter2-new"}))

    [change] = differences(before, after)

    assert change.kind == "env" and change.name == "DEMO_API_TOKEN"
    assert is_masked(change.before or "") and is_masked(change.after or "")
    assert change.after == mask_value("hunter2-new", KEY)
    assert "hunter2" not in repr(change)


def test_a_credential_in_an_argument_is_masked_in_the_difference() -> None:
    before = view(command(["curl", "--token", "s3cr3t-one", "https://x"]))
    after = view(command(["curl", "--token", "s3cr3t-two", "https://x"]))

    [change] = differences(before, after)

    assert change.name == "argv[2]" and "s3cr3t" not in repr(change)


def test_masks_made_with_different_keys_are_not_reported_as_changes_but_noted() -> None:
    other_key = MaskingKey(b"o" * 32)
    before = view(pants_pytest("a_test.py", {"API_TOKEN": "same"}), key=other_key)
    after = view(pants_pytest("a_test.py", {"API_TOKEN": "same"}))

    assert differences(before, after) == []
    assert masked_incomparable(before, after)


def test_input_files_by_path_when_both_trees_are_known() -> None:
    before = view(
        command(["x"]),
        input_root=b"r1",
        input_files={"data/words.txt": digest_text(b"a"), "data/gone.csv": digest_text(b"g"), "BUILD": "b/1"},
    )
    after = view(
        command(["x"]),
        input_root=b"r2",
        input_files={"data/words.txt": digest_text(b"b"), "data/new.csv": digest_text(b"n"), "BUILD": "b/1"},
    )

    assert differences(before, after) == [
        Difference("input_file", "data/gone.csv", digest_text(b"g"), None),
        Difference("input_file", "data/new.csv", None, digest_text(b"n")),
        Difference("input_file", "data/words.txt", digest_text(b"a"), digest_text(b"b")),
    ]


def test_input_root_digests_when_a_tree_is_unknown() -> None:
    before = view(command(["x"]), input_root=b"r1", input_files={"a": "1/1"})
    after = view(command(["x"]), input_root=b"r2")

    assert differences(before, after) == [Difference("input_root", None, digest_text(b"r1"), digest_text(b"r2"))]


def test_bazel_platform_working_directory_output_paths_and_timeout_differences() -> None:
    before = view(
        bazel_genrule("gen.txt", "echo 1 > $@", cpu="k8"), timeout_seconds=60, action_platform=[("pool", "small")]
    )
    cmd = bazel_genrule("gen.txt", "echo 1 > $@", cpu="k8")
    cmd.platform.properties[1].value = "docker://gcr.io/x@sha256:2"
    cmd.working_directory = "sub"
    cmd.output_files.append("bazel-out/k8-fastbuild/bin/gen.log")
    after = view(cmd, timeout_seconds=90, action_platform=[("pool", "large")])

    assert differences(before, after) == [
        Difference("platform", "container-image", "docker://gcr.io/x@sha256:1", "docker://gcr.io/x@sha256:2"),
        Difference("platform", "pool", "small", "large"),
        Difference("working_directory", None, "", "sub"),
        Difference("output_paths", "bazel-out/k8-fastbuild/bin/gen.log", None, "bazel-out/k8-fastbuild/bin/gen.log"),
        Difference("timeout", None, "60s", "90s"),
    ]


def test_identical_actions_have_no_differences() -> None:
    assert differences(view(pants_pytest("a_test.py")), view(pants_pytest("a_test.py"))) == []
