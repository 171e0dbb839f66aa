#!/usr/bin/env bash
# The dev stack without the demo: a Temporal dev server and a skein-worker, for using skein by hand.
source "$(dirname "$0")/lib.sh"
start_temporal
start_worker
cat <<MSG

Dev stack is up.
  Temporal UI:   http://localhost:$TEMPORAL_UI_PORT
  Worker log:    .dev/worker.log   (secrets: files in .dev/secrets/<name>)
  Try:           bin/skein start -f deployments/dev/demo-task.yaml
                 bin/skein status demo --watch
  Stop:          make down
MSG
