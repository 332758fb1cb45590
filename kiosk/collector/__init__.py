"""The central collector: an aiohttp service kiosks send entries and heartbeats to, that serves
their configuration, and that inspectors and admins use (sync-api.md).

- `app`: `build_app(config, clock=...)`, `run(config)`; state under the typed keys of `keys`.
- `api_kiosk`, `api_admin`, `api_ops`: the endpoints, each an `operations.Operation` (route and
  OpenAPI description in one value); `app.add_operations` adds more (the inspectors' API).
- `auth` (tokens to principals, 401/403), `errors` (the one error shape), `bodies` (bounded
  reads), `batch` (a batch checked whole), `canonical` (RFC 8785 at ingest speed),
  `kiosk_config` (the configuration document and its ETag), `openapi`, `metrics`, `tokens`.
- `storage`: one interface, SQLite and PostgreSQL; its package docstring describes the tables.

It never imports the door wing (kiosk.door); both build on the pure core.
"""
