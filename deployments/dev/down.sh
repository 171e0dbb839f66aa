#!/usr/bin/env bash
# Stops everything make up / make demo started. State stays in .dev/ (rm -rf .dev to forget it).
source "$(dirname "$0")/lib.sh"
stop_pid worker
stop_pid temporal
stop_cluster source
stop_cluster destination
stop_oracle_destination
