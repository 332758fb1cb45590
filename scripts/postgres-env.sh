# Sourced by `make test`: exports KIOSK_TEST_PG_URL when a PostgreSQL server can be had on this
# machine (already set, running on 127.0.0.1:5432, or a local cluster that can be started).
# Where none can be had, the PostgreSQL tests skip and say why.
if [ -z "${KIOSK_TEST_PG_URL:-}" ]; then
  if command -v pg_isready >/dev/null 2>&1; then
    if ! pg_isready -q -h 127.0.0.1 -p 5432 && command -v pg_ctlcluster >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ]; then
      for v in $(ls /etc/postgresql 2>/dev/null); do
        pg_ctlcluster --skip-systemctl-redirect "$v" main start >/dev/null 2>&1 || true
      done
      for _ in 1 2 3 4 5 6 7 8 9 10; do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 0.5; done
    fi
    if pg_isready -q -h 127.0.0.1 -p 5432; then
      export KIOSK_TEST_PG_URL="postgresql://postgres@127.0.0.1:5432/postgres"
    fi
  fi
fi
