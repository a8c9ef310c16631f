import sys

from astats_ops.cli import main

sys.exit(main())
