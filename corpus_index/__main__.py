"""``python -m corpus_index``: see :mod:`corpus_index.cli`."""

import sys

from corpus_index.cli import main

sys.exit(main())
