"""The nearest cached action of a miss is the previous version of the same process:
same output paths first, then the most similar arguments, then the most similar
environment; or none (oci_cache.explain.matcher)."""

from __future__ import annotations

from explain_builders import bazel_genrule, command, pants_pytest, view

from oci_cache.explain.matcher import CandidateIndex


def test_a_changed_test_file_finds_the_previous_run_of_the_same_test_among_others() -> None:
    previous = view(pants_pytest("src/py/greet/greet_test.py"), input_root=b"v1")
    others = [view(pants_pytest(f"src/py/other{n}/other_test.py"), input_root=b"v1") for n in range(20)]
    miss = view(pants_pytest("src/py/greet/greet_test.py"), input_root=b"v2")

    assert CandidateIndex([*others, previous]).nearest(miss) == previous


def test_same_output_paths_win_over_more_similar_arguments() -> None:
    same_outputs = view(command(["sh", "-c", "echo a > out.txt"], output_files=["out.txt"]))
    similar_arguments = view(command(["sh", "-c", "echo b > out.txt"], output_files=["elsewhere.txt"]))
    miss = view(command(["sh", "-c", "echo b > out.txt"], output_files=["out.txt"]))

    assert CandidateIndex([similar_arguments, same_outputs]).nearest(miss) == same_outputs


def test_with_equal_arguments_the_most_similar_environment_wins() -> None:
    arguments = ["./run.sh", "--fast"]
    far = view(command(arguments, {"PATH": "/x", "LANG": "C", "HOME": "/h1"}))
    near = view(command(arguments, {"PATH": "/usr/bin", "LANG": "C", "HOME": "/h1"}))
    miss = view(command(arguments, {"PATH": "/usr/bin", "LANG": "C", "HOME": "/h2"}))

    assert CandidateIndex([far, near]).nearest(miss) == near
    assert CandidateIndex([near, far]).nearest(miss) == near


def test_a_process_unlike_any_cached_one_has_no_nearest_action() -> None:
    cached = [view(pants_pytest(f"src/py/t{n}_test.py")) for n in range(5)]
    new = view(command(["/usr/bin/python3", "generate.py", "--into", "gen/"], output_directories=["gen"]))

    assert CandidateIndex(cached).nearest(new) is None


def test_no_candidates_means_no_nearest_action() -> None:
    assert CandidateIndex([]).nearest(view(pants_pytest("a_test.py"))) is None


def test_the_miss_itself_is_never_its_own_nearest_but_is_reported_as_held() -> None:
    miss = view(pants_pytest("a_test.py"))
    index = CandidateIndex([miss])

    assert index.nearest(miss) is None
    assert index.holds(miss.action) == miss


def test_bazel_genrules_match_by_their_output_path() -> None:
    cached = [view(bazel_genrule(f"gen{n}.txt", f"echo {n} > $@")) for n in range(10)]
    miss = view(bazel_genrule("gen3.txt", "echo three > $@"))

    assert CandidateIndex(cached).nearest(miss) == cached[3]


def test_a_candidate_record_from_an_image_matches_like_a_command() -> None:
    cached = view(pants_pytest("a_test.py", {"API_TOKEN": "tok-1"}), source="type=registry,ref=r/x:c")
    miss = view(pants_pytest("a_test.py", {"API_TOKEN": "tok-2"}))

    nearest = CandidateIndex([cached]).nearest(miss)

    assert nearest is not None and nearest.source == "type=registry,ref=r/x:c"
    assert "tok-1" not in repr(nearest)
