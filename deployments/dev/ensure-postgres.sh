#!/usr/bin/env bash
# Makes sure PostgreSQL server binaries are installed: with apt-get when root, else says how.
source "$(dirname "$0")/lib.sh"
if pg_bindir >/dev/null; then exit 0; fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  say "installing PostgreSQL server binaries (apt-get install postgresql)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  pg_bindir >/dev/null || die "postgresql installed but initdb not found"
  exit 0
fi
die "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found. Install them, e.g.
  sudo apt-get install postgresql
or set PG_BINDIR to the folder that holds them."
