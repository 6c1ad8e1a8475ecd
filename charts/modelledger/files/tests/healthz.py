"""`helm test`: GET the operator's /healthz (argv[1]) until it answers 200, at most argv[2] attempts.

Runs in the operator's image with `python -c`; the standard library only. Any other status (a leader
whose deployment loops stalled answers 503), a refused connection or a timeout is a failure.
"""

import sys
import time
import urllib.request

url, attempts = sys.argv[1], int(sys.argv[2])
for attempt in range(1, attempts + 1):
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            body = response.read(2048).decode(errors="replace")
            sys.stdout.write(f"{url}: {response.status} {body}\n")
            sys.exit(0 if response.status == 200 else 1)
    except OSError as error:  # urllib's HTTPError (4xx, 5xx) and URLError are OSErrors
        sys.stderr.write(f"{url}: attempt {attempt}/{attempts}: {error}\n")
    if attempt < attempts:
        time.sleep(3)
sys.exit(1)
