import sys

from jsurgery.cli import main

sys.exit(main())
