import sys

from emulator.apiserver.server import main

sys.exit(main())
