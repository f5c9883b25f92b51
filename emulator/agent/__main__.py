import sys

from emulator.agent.agent import main

sys.exit(main())
