import { Router } from 'express';
import type { Database } from '../models/database.js';

/** Liveness and readiness probes: no session, no logging of bodies. */
export function healthRoutes(deps: { database: Database }): Router {
  const router = Router();

  router.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });

  router.get('/readyz', async (_req, res) => {
    const ok = await deps.database.ping();
    if (ok) res.json({ status: 'ready', database: 'up' });
    else res.status(503).json({ error: 'not_ready', message: 'The database is not reachable.' });
  });

  return router;
}
