"""An app whose import never returns (it waits for a service that never answers)."""

import threading

threading.Event().wait()
