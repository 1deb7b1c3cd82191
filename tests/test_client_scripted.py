"""Interleavings forced with a scripted transport (tests/scenarios/client_scripted.py)."""


def test_a_message_split_across_reads_survives_a_backlog_delivery(interp, run_scenario):
    # Before the fix, delivering from the backlog moved its entries down
    # while C was half read into it, so C's second half landed elsewhere:
    # C came out as garbage.
    acked, got = run_scenario(interp, "client_scripted", "backlog_split_while_delivering")
    assert acked is True
    assert got == [(b"t/a", b"A" * 10), (b"t/b", b"B" * 10), (b"t/c", bytes(range(40)))]
