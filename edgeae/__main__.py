import sys

from edgeae.cli import main

sys.exit(main())
