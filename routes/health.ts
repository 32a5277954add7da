import { Router } from 'express';
import type { Database } from '../models/database.js';
import type { HealthBody, NotReadyBody, ReadyBody } from './api-schemas.js';

const HEALTHY: HealthBody = { status: 'ok' };
const READY: ReadyBody = { status: 'ready', database: 'up' };
const NOT_READY: NotReadyBody = { error: 'not_ready', message: 'The database is not reachable.' };

/** Liveness and readiness probes: no session, no logging of bodies. */
export function healthRoutes(deps: { database: Database }): Router {
  const router = Router();

  router.get('/healthz', (_req, res) => {
    res.json(HEALTHY);
  });

  router.get('/readyz', async (_req, res) => {
    const ok = await deps.database.ping();
    if (ok) res.json(READY);
    else res.status(503).json(NOT_READY);
  });

  return router;
}
