"""`python -m streamvid.studio` = `streamvid-studio`."""

import sys

from streamvid.studio.cli import main

sys.exit(main())
