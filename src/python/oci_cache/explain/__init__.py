"""Explaining cache misses: for each miss, the nearest cached action and what differs.

- actions.py: `ActionView`, what an explanation knows of one action (its Command as a
  masked record, input root, platform, timeout, input files when known);
- matcher.py: `CandidateIndex.nearest(miss)`, the previous version of the same process;
- differ.py: `differences(before, after)`, what changed between two actions;
- report.py: the `pants-oci-cache/explain/v1` JSON report, its table and one-clause summary;
- recorder.py: the daemon side, recording a run's misses and what the client uploads.

actions, matcher, differ and report are pure (no I/O); values of secret-looking
variables and credential-looking arguments only ever appear masked (secret_masking).
"""
