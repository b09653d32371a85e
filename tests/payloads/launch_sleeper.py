"""Write this rank's pid to DIR/<rank>.pid, then sleep until killed."""

import os
import sys
import time
from pathlib import Path

out = Path(sys.argv[1])
(out / f"{os.environ.get('RANK', '0')}.pid").write_text(str(os.getpid()))
print("ready", flush=True)
time.sleep(600)
