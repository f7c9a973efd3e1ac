"""The sort-based distinct values answer exactly what np.unique answers."""

import numpy as np
import pytest

from services.arrays import distinct, distinct_first_index, distinct_inverse


@pytest.mark.parametrize("size", [0, 1, 2, 7, 500, 5000])
@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.float64])
def test_equal_to_numpy_unique(size, dtype):
    rng = np.random.default_rng(size)
    values = rng.integers(0, max(size // 3, 1), size).astype(dtype)

    np.testing.assert_array_equal(distinct(values), np.unique(values))
    assert distinct(values).dtype == values.dtype

    found, inverse = distinct_inverse(values)
    expected, expected_inverse = np.unique(values, return_inverse=True)
    np.testing.assert_array_equal(found, expected)
    np.testing.assert_array_equal(inverse, expected_inverse)
    np.testing.assert_array_equal(found[inverse], values)

    found, first = distinct_first_index(values)
    expected, expected_first = np.unique(values, return_index=True)
    np.testing.assert_array_equal(found, expected)
    np.testing.assert_array_equal(first, expected_first)
