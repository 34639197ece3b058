"""``python -m training train ...`` / ``python -m training eval embeddings ...``."""
import sys

from vsearch.commands.trainer import main

sys.exit(main())
