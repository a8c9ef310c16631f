import sys

from astats_console.cli import main

sys.exit(main())
