"""What a serving worker imports: the start-up of every worker pays for it."""

import subprocess
import sys

from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

from services.search import STOP_WORDS


def test_stop_words_are_scikit_learns():
    assert STOP_WORDS == ENGLISH_STOP_WORDS


def test_the_app_loads_without_scikit_learn_and_trains_with_it():
    # scikit-learn (with scipy.stats) is over a second of a worker's import; training uses it.
    code = (
        "import sys, main; assert 'sklearn' not in sys.modules, 'serving imported sklearn'; "
        "import lightgbm, numpy as np; "
        "from sklearn.feature_extraction.text import TfidfVectorizer; "
        "TfidfVectorizer().fit(['running shoes', 'wireless earbuds']); "
        "data = lightgbm.Dataset(np.random.rand(50, 3), np.random.rand(50)); "
        "lightgbm.train({'verbose': -1}, data, num_boost_round=2)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
