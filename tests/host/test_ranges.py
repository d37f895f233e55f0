"""RangeSet: the host's record of which flash log records it holds equals a plain set."""

from hypothesis import given, settings, strategies as st

from wears.ranges import RangeSet


@settings(deadline=None)  # no per-example time limit: a loaded CI machine is slow, not wrong
@given(st.lists(st.tuples(st.integers(0, 300), st.integers(0, 8)), max_size=80),
       st.integers(0, 320), st.integers(0, 60))
def test_ranges_agree_with_a_set(adds, start, length):
    ranges, plain = RangeSet(), set()
    for a, n in adds:
        new = set(range(a, a + n)) - plain
        assert ranges.add_range(a, a + n) == len(new)
        plain |= new
    assert len(ranges) == len(plain)
    gaps = set()
    for a, b in ranges.missing(start, start + length):
        assert a < b
        gaps |= set(range(a, b))
    assert gaps == set(range(start, start + length)) - plain
    first = ranges.first_missing(start)
    assert first not in plain and all(v in plain for v in range(start, first))
    spans = ranges.ranges()
    assert all(spans[i][1] < spans[i + 1][0] for i in range(len(spans) - 1))  # disjoint, not touching
