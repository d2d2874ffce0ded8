import os
import sys

# ``python -m haq_rl`` puts the current directory first on sys.path: started inside a run
# directory someone sent, a torch.py or numpy.py there would be imported ahead of the real
# ones. The package itself is imported by now; the console script never had it either.
if not sys.flags.safe_path and sys.path and sys.path[0] in ("", os.getcwd()):
    del sys.path[0]

from haq_rl.cli import entry  # noqa: E402  (after the path is fixed)

entry()
