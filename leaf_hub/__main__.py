import sys

from leaf_hub.cli import main

sys.exit(main())
