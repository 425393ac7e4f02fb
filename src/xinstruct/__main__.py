import sys

from xinstruct.cli import main

sys.exit(main())
