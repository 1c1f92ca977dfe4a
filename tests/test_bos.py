import pytest

from torch_tos import BOs


def test_arithmetic_and_access():
    b = BOs(add=5, mul=4) + BOs(sub=1, root=2)
    assert b == BOs(5, 1, 4, 0, 2)
    assert b["root"] == 2 and b.mul == 4 and b[0] == 5
    assert 3 * b == b * 3 == BOs(15, 3, 12, 0, 6)
    assert b - BOs(add=5) == BOs(0, 1, 4, 0, 2)
    assert sum([b, b], BOs()) == b * 2
    assert b.total == 12
    assert b.to_dict() == {"add": 5, "sub": 1, "mul": 4, "div": 0, "root": 2}
    assert not BOs() and b


def test_unknown_name():
    with pytest.raises(KeyError, match="unknown basic operation 'mac'"):
        BOs()["mac"]
