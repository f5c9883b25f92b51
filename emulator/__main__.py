import sys

from emulator.cli.entry import main

sys.exit(main())
