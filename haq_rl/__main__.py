import os
import sys

# ``python -m haq_rl`` puts the current directory first on sys.path: started inside a run
# directory someone sent, a torch.py or numpy.py there would be imported ahead of the real
# ones. The package itself is imported by now; the console script never had it either.
if not sys.flags.safe_path and sys.path and sys.path[0] in ("", os.getcwd()):
    del sys.path[0]

# Ctrl-C and SIGTERM are recorded from here on and stop the command once its imports are done.
from haq_rl.interrupts import InterruptWatch  # noqa: E402  (after the path is fixed)

_watch = InterruptWatch().install()

from haq_rl.cli import entry  # noqa: E402

entry(_watch)
