import numpy as np

from ml.visit_stats import visit_stats


def test_visit_statistics_on_hand_made_visits():
    visits = [np.array([1, 2, 1]), np.array([5]), np.array([3, 4, 4, 6])]
    categories = [np.array([0, 0, 0]), np.array([9]), np.array([1, 2, 2, 2])]
    stats = visit_stats(visits, categories)
    assert stats["visits"] == 2  # a one-click visit does not count
    assert stats["clicks_per_visit_mean"] == 3.5
    assert stats["re_click_share"] == round(2 / 7, 3)  # product 1 again, product 4 again
    assert stats["same_sub_category_share"] == round(4 / 5, 3)
