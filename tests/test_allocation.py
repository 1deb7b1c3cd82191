"""Heap use of the steady-state path under build/micropython (64-bit).

The bound is the issue's: at most 128 B per publish-and-receive round of a
64-byte QoS0 message to the client's own subscription, in the seed's poll
loop, 1,000 rounds, the collector off.
"""
BOUND_PER_ROUND = 128


def test_seed_loop_allocates_at_most_128_bytes_per_round(run_scenario, broker):
    r = run_scenario("micropython", "client_alloc", "seed_loop", port=broker.port, tag="mp")
    assert r["rounds"] == 1000
    print("heap per round:", r)
    assert r["per_round"] <= BOUND_PER_ROUND, r


def test_seed_loop_behaves_the_same_on_cpython(run_scenario, broker):
    r = run_scenario("cpython", "client_alloc", "seed_loop", port=broker.port, tag="cp",
                     rounds=200)
    assert r["rounds"] == 200


def test_idle_poll_qos0_publish_and_keepalive_allocate_nothing(run_scenario, own_broker):
    r = run_scenario("micropython", "client_alloc", "idle_polls_locked",
                     port=own_broker.port, tag="lk")
    assert r == [True, None, 0]
    # the keepalive ran inside the locked window: PINGREQs went out and were answered
    assert own_broker.log().count("Received PINGREQ from lock-lk") >= 2


def test_an_async_transport_answering_plain_values_costs_no_more_than_a_sync_one(run_scenario, broker):
    """async_sock=True over a transport whose readinto/write answer plain
    values (the SIM800L driver's async flavour does): the round stays within
    the sync flavour's bound (one coroutine per delivered message)."""
    r = run_scenario("micropython", "client_alloc", "seed_loop_async_plain", port=broker.port,
                     tag="ap")
    print("heap per round, async transport with plain answers:", r)
    assert r["rounds"] == 1000
    assert r["per_round"] <= BOUND_PER_ROUND, r


# MicroPython's dicts grow only when full, through these sizes (py/map.c,
# hash_allocation_sizes), so a dict holding exactly one of them is a full
# table: a lookup that misses probes every slot.  Every attribute access on
# the client misses in the instance dict (for a method) or in the class
# dicts (for an instance attribute: the store looks for a setter first), and
# a 73-entry class dict once cost the publish loop ~40% (found by callgrind).
FULL_SIZES = (2, 4, 6, 8, 10, 12, 17, 23, 29, 37, 47, 59, 73, 97, 127, 167, 223)


def test_no_dict_on_the_clients_lookup_path_is_a_full_table(run_scenario, broker):
    sizes = run_scenario("micropython", "client_alloc", "dict_sizes", port=broker.port, tag="ds")
    print("dict sizes:", sizes)
    assert len(sizes) == 6 and all(n > 0 for n in sizes.values()), sizes
    full = {k: n for k, n in sizes.items() if n in FULL_SIZES}
    assert not full, "add or remove a member to move these off a full table: %s" % full
