import sys

from wmrl.cli import main

sys.exit(main())
