"""``python -m openai_files.cli``: the ``openai-files`` command."""

import sys

from ._main import main

sys.exit(main())
