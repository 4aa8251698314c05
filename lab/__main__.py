import sys

from lab.vmlab import main

sys.exit(main())
