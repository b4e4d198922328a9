#!/usr/bin/env bash
# Run the readers' fuzz harness (tests/fuzz) for longer than CI does.
#   benchmarks/fuzz_long.sh            # about 30 minutes in all, split between the targets
#   benchmarks/fuzz_long.sh 7200 -k tfevents   # 2 hours on the event-file targets only
# Failing inputs are saved under $LABBOOK_FUZZ_CRASH_DIR (default /tmp/labbook-fuzz-crashes);
# keep each as a regression fixture in tests/fixtures/fuzz/<target>/ (see tests/fuzz/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-1800}"
shift || true
LABBOOK_FUZZ_PROFILE=long LABBOOK_FUZZ_SECONDS="$seconds" \
  exec python -m pytest tests/fuzz/test_fuzz_readers.py -q -p no:cacheprovider "$@"
