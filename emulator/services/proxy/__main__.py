import sys

from emulator.services.proxy.kubeproxy import main

sys.exit(main())
